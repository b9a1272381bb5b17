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
