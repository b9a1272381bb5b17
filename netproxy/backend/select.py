"""Pick a backend for a namespace from the command-line choices."""

from __future__ import annotations

from netproxy.backend import netns, xtables
from netproxy.backend.engine import Backend, RestoreBackend

BACKENDS = ("restore", "iptc")


def open_backend(name: str, *, variant: str = "auto", backend: str = "restore",
                 family: str = "ipv4", allow_host: bool = False) -> Backend:
    """Check the namespace and tools, and return the backend that will drive them."""
    netns.require(name, allow_host=allow_host)
    if backend == "iptc":
        from netproxy.backend.iptc_backend import IptcBackend

        return IptcBackend.open(name, variant=variant, family=family)
    return RestoreBackend(name, xtables.resolve(variant, family))


def other_variant_note(backend: Backend) -> str | None:
    """A warning when an nft-managed namespace also holds iptables-legacy rules: the two
    variants do not see each other, and both sets of rules act on packets."""
    if backend.variant != "nft":
        return None
    from netproxy.backend.fingerprint import legacy_tables_info
    from netproxy.backend.nsthread import run_in_netns
    from netproxy.netfilter.model import BUILTIN_CHAINS

    info = run_in_netns(backend.netns, lambda: legacy_tables_info(backend.family))
    busy = sorted(t for t, v in info.items() if v[-2] > len(BUILTIN_CHAINS.get(t, ())) + 1)
    if not busy:
        return None
    return (f"note: netns {backend.netns} also holds iptables-legacy rules ({', '.join(busy)}), which "
            "iptables-nft does not see; keep kube-proxy's rules in one variant (--iptables legacy)")
