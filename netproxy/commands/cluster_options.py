"""The inputs and kube-proxy flags shared by every command that compiles a cluster.

``@cluster_options`` adds the ``INPUTS...`` argument and the flags; :func:`build_ruleset`
turns the resulting parameters into the node's ruleset (the save view), which is what
``trace``, ``diff --expected``, ``apply`` and ``doctor`` work on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from netproxy.errors import InputError
from netproxy.gcpause import paused_gc
from netproxy.textsafe import shown

# The Kubernetes side and the compiler are imported where they are used, so commands that
# take these flags but read a dump (``trace --rules``) start without loading them.
if TYPE_CHECKING:
    from netproxy.compiler import Compiled
    from netproxy.k8s.config import KubeProxyConfig
    from netproxy.k8s.loader import Cluster
    from netproxy.netfilter.model import Ruleset
    from netproxy.proxy.settings import ProxySettings

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS: list[Callable[[F], F]] = [
    click.argument("inputs", nargs=-1, metavar="INPUTS...", type=click.Path(allow_dash=True)),
    click.option("--config", "config_path", metavar="FILE", type=click.Path(allow_dash=False),
                 help="KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1)."),
    click.option("--hostname-override", metavar="NAME",
                 help="Node name (default: config, the only Node in the inputs, or this host)."),
    click.option("--cluster-cidr", metavar="CIDRS", help="Pod CIDRs, comma-separated (one per family)."),
    click.option("--detect-local-mode", metavar="MODE",
                 help="ClusterCIDR (default), NodeCIDR, BridgeInterface or InterfaceNamePrefix."),
    click.option("--pod-bridge-interface", "--bridge-interface", "bridge_interface", metavar="IFACE",
                 help="Bridge of the BridgeInterface detector."),
    click.option("--pod-interface-name-prefix", "interface_name_prefix", metavar="PREFIX",
                 help="Interface prefix of the InterfaceNamePrefix detector."),
    click.option("--masquerade-all/--no-masquerade-all", default=None,
                 help="SNAT all service traffic (kube-proxy --masquerade-all)."),
    click.option("--iptables-masquerade-bit", "masquerade_bit", type=click.IntRange(0, 31),
                 metavar="BIT", help="fwmark bit for SNAT (default 14)."),
    click.option("--iptables-localhost-nodeports/--no-iptables-localhost-nodeports",
                 "localhost_nodeports", default=None,
                 help="NodePorts reachable on 127.0.0.1 (default on)."),
    click.option("--nodeport-addresses", metavar="CIDRS", multiple=True,
                 help="CIDRs NodePorts listen on, comma-separated or repeated; 'primary' = node IPs."),
    click.option("--conntrack-tcp-be-liberal/--no-conntrack-tcp-be-liberal", "tcp_be_liberal",
                 default=None, help="nf_conntrack_tcp_be_liberal is set (no INVALID drop rule)."),
    click.option("--node-ip", "node_ips", metavar="IP", multiple=True,
                 help="Node address (repeatable; the first of a family is the primary node IP)."),
    click.option("--random-fully/--no-random-fully", default=True, show_default=True,
                 help="iptables supports MASQUERADE --random-fully."),
    click.option("--nfacct/--no-nfacct", default=True, show_default=True,
                 help="nfacct counters are available."),
    click.option("--family", type=click.Choice(["ipv4", "ipv6", "dual"]), default="ipv4",
                 show_default=True,
                 help="IP family of the proxier (ip6tables for ipv6); dual: both tables "
                      "(compile --proxy-mode nftables)."),
]


def cluster_options(f: F) -> F:
    """Decorate a click command with ``INPUTS...`` and every compile flag."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def _split(values: Any) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out.extend(p.strip() for p in str(value).split(",") if p.strip())
    return tuple(out)


def _note(text: str) -> None:
    click.echo(f"netproxy: note: {text}", err=True)


_WARNED: set[str] = set()


def _warn(text: str) -> None:
    """A warning on stderr, once per run (a command may load the same inputs twice)."""
    if text not in _WARNED:
        _WARNED.add(text)
        click.echo(f"netproxy: warning: {text}", err=True)


def command_name() -> str:
    """The netproxy sub-command being run (``lab`` for ``lab up``), for messages."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent
    return (ctx.info_name or "") if ctx is not None else ""


def _prepare(text: str, name: str) -> str:
    """Refuse a file that is not cluster objects (saying what takes it); blank paste damage."""
    from netproxy.inputs.guide import ACCEPTED, refuse
    from netproxy.inputs.read import cluster_text
    from netproxy.inputs.sniff import looks_like_yaml, sniff_text

    found = sniff_text(text)
    if found.kind not in ACCEPTED["cluster"] or (found.kind == "text" and not looks_like_yaml(found)):
        raise refuse(found, where=name, role="cluster", command=command_name())
    return cluster_text(text, name, _note)


def load_cluster(params: dict[str, Any]) -> Cluster:
    """Read the inputs named by ``params['inputs']`` (notes go to stderr)."""
    from netproxy.inputs.read import check_inputs
    from netproxy.k8s.loader import load_inputs

    inputs = params.get("inputs") or ()
    if not inputs:
        raise InputError("no inputs: give YAML/JSON files, directories, or - for stdin")
    check_inputs(inputs, command_name())  # what only the bytes show: captures, binaries
    return load_inputs(inputs, note=_note, prepare=_prepare, warn=_warn,
                       strict=bool(params.get("strict")))


def effective_config(params: dict[str, Any], cluster: Cluster | None = None) -> KubeProxyConfig:
    """The KubeProxyConfiguration (file or inputs) with the flags applied on top."""
    from netproxy.k8s.config import KubeProxyConfig, config_from_document, load_config, split_cidrs

    if params.get("config_path"):
        from netproxy.inputs.read import check_input

        check_input(params["config_path"], "config", command_name())
        cfg = load_config(params["config_path"], strict=bool(params.get("strict")), warn=_warn)
    elif cluster is not None and cluster.configs:
        if len(cluster.configs) > 1:
            raise InputError("more than one KubeProxyConfiguration among the inputs",
                             where=cluster.configs[1][1])
        cfg = config_from_document(*cluster.configs[0])
    else:
        cfg = KubeProxyConfig()
    npa = _split(params.get("nodeport_addresses"))
    cidr = params.get("cluster_cidr")
    return cfg.with_changes(
        hostname_override=params.get("hostname_override"),
        cluster_cidrs=split_cidrs(cidr) if cidr is not None else None,
        detect_local_mode=params.get("detect_local_mode"),
        bridge_interface=params.get("bridge_interface"),
        interface_name_prefix=params.get("interface_name_prefix"),
        masquerade_bit=params.get("masquerade_bit"),
        masquerade_all=params.get("masquerade_all"),
        localhost_nodeports=params.get("localhost_nodeports"),
        nodeport_addresses=npa or None,
        tcp_be_liberal=params.get("tcp_be_liberal"),
        mode=params.get("proxy_mode"),
    )


def _node_name(cfg: KubeProxyConfig, cluster: Cluster) -> str:
    from netproxy.k8s.loader import env_hostname

    if cfg.hostname_override:
        return cfg.hostname_override.strip().lower()
    if len(cluster.nodes) == 1:
        return cluster.nodes[0].name
    if len(cluster.nodes) > 1:
        names = sorted(node.name for node in cluster.nodes)
        shown_names = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        raise InputError(f"{len(names)} Nodes among the inputs ({shown_names}): say which one "
                         "to compile for with --hostname-override NAME (or hostnameOverride in "
                         "the KubeProxyConfiguration)")
    return env_hostname()


def _node_ips(params: dict[str, Any], cluster: Cluster, node_name: str) -> list[str]:
    """All node addresses (both families): ``--node-ip`` flags, else the Node's addresses."""
    from netproxy.k8s.ipaddr import parse_ip

    flags = _split(params.get("node_ips"))
    out: list[str] = []
    for text in flags:
        addr = parse_ip(text)
        if addr is None:
            raise InputError(f"invalid IP address {shown(text)}", where="--node-ip")
        out.append(str(addr))
    if out:
        return out
    node = cluster.node(node_name)
    if node is not None:
        for kind in ("InternalIP", "ExternalIP"):
            for typ, text in node.addresses:
                addr = parse_ip(text)
                if typ == kind and addr is not None and str(addr) not in out:
                    out.append(str(addr))
    return out


def _say_missing_family(cluster: Cluster, family: str) -> None:
    """A note when Services exist but none has an address of ``family``: the rules for it hold
    only kube-proxy's base chains, which is rarely what was meant."""
    if family not in ("ipv4", "ipv6") or not cluster.services:
        return
    six = family == "ipv6"
    for svc in cluster.services:
        if svc.type == "ExternalName":
            continue
        if any((":" in ip) == six for ip in svc.cluster_ips if ip and ip != "None"):
            return
        if svc.cluster_ip == "None" and any((fam == "IPv6") == six for fam in svc.ip_families):
            return
    other = "ipv4" if six else "ipv6"
    _warn(f"no Service among the inputs has an {family} address: the {family} rules hold only "
          f"kube-proxy's base chains (the Services are {other}: --family {other})")


def settings_for(params: dict[str, Any], cluster: Cluster, *,
                 nftables: bool = False) -> ProxySettings:
    """The proxier settings for ``params['family']`` on the chosen node.

    Only callers that write nftables mode pass ``nftables=True``; for the others a
    configuration in nftables mode is an error (they work on iptables-mode rules).
    """
    from netproxy.k8s.ipaddr import family_of, parse_ip
    from netproxy.proxy.localdetect import local_detector
    from netproxy.proxy.nodeports import nodeport_addresses
    from netproxy.proxy.settings import ProxySettings

    cfg = effective_config(params, cluster)
    family = params.get("family") or "ipv4"
    _say_missing_family(cluster, family)
    if family == "dual":
        raise InputError("both families at once only in nftables mode (netproxy compile "
                         "--proxy-mode nftables); give --family ipv4 or ipv6", where="--family")
    if cfg.mode == "nftables" and not nftables:
        raise InputError("the configuration selects nftables mode; this command works on "
                         "iptables-mode rules (netproxy compile --proxy-mode nftables writes "
                         "nftables mode)", where=cfg.source or "mode")
    node_name = _node_name(cfg, cluster)
    node = cluster.node(node_name)
    ips = [ip for ip in _node_ips(params, cluster, node_name)
           if family_of(parse_ip(ip)) == family]  # type: ignore[arg-type]
    if cfg.detect_local_mode == "NodeCIDR" and (node is None or not node.pod_cidrs):
        raise InputError(f"detectLocalMode NodeCIDR needs a Node object named {shown(node_name)} "
                         "with spec.podCIDRs among the inputs", where="detectLocalMode")
    detector = local_detector(
        cfg.detect_local_mode, family, cluster_cidrs=cfg.cluster_cidrs,
        node_pod_cidrs=node.pod_cidrs if node is not None else (),
        bridge_interface=cfg.bridge_interface, interface_prefix=cfg.interface_name_prefix)
    return ProxySettings(
        family=family,
        node_name=node_name,
        node_ips=tuple(ips),
        zone=node.zone if node is not None else "",
        detector=detector,
        masquerade_bit=_masquerade_bit(params, cfg),
        masquerade_all=cfg.masquerade_all,
        localhost_nodeports=cfg.localhost_nodeports,
        # nftables mode listens on the primary node IPs unless told otherwise
        nodeports=nodeport_addresses(cfg.nodeport_addresses or (("primary",) if nftables else ()),
                                     family, ips[:1]),
        random_fully=bool(params.get("random_fully", True)),
        nfacct=bool(params.get("nfacct", True)),
        tcp_be_liberal=cfg.tcp_be_liberal,
    )


def _masquerade_bit(params: dict[str, Any], cfg: KubeProxyConfig) -> int:
    """iptables.masqueradeBit, or nftables.masqueradeBit in nftables mode (the
    ``--iptables-masquerade-bit`` flag, when given, is used in nftables mode too: kube-proxy
    has no nftables flag of its own)."""
    if cfg.mode == "nftables" and params.get("masquerade_bit") is None:
        return cfg.nftables_masquerade_bit
    return cfg.masquerade_bit


def proxy_mode(params: dict[str, Any], cluster: Cluster) -> str:
    """``--proxy-mode`` or the configuration's ``mode`` (default iptables)."""
    return effective_config(params, cluster).mode or "iptables"


def compile_params(params: dict[str, Any], existing_nat_chains: tuple[str, ...] = ()) -> Compiled:
    """Load the inputs and compile them: both the restore payload and the save view."""
    from netproxy.compiler import compile_cluster

    with paused_gc(freeze=True):
        cluster = load_cluster(params)
        return compile_cluster(cluster, settings_for(params, cluster), existing_nat_chains)


def build_ruleset(params: dict[str, Any]) -> Ruleset:
    """The node's ruleset after kube-proxy's sync (what iptables-save shows), for the family."""
    return compile_params(params).save


def node_local_ips(params: dict[str, Any]) -> list[str]:
    """The node's own addresses of the chosen family, loopback first (for the tracer)."""
    cluster = load_cluster(params)
    return list(settings_for(params, cluster).local_addresses)
