"""kube-proxy's rule comments: which Service port a rule belongs to and what the rule is for.

:func:`parse_comment` reads a whole comment into the Service port and the rule's role (the
doctor's model); :func:`comment_spn`, :func:`comment_endpoint`, :func:`frontend_kind` and
:func:`no_endpoint_reason` pick one thing out of any comment that mentions it (the differ's
identity index, which also meets comments other software wrote around kube-proxy's words).

kube-proxy names the Service port in nearly every comment it writes (``"default/web:http
cluster IP"``, ``"default/web:http -> 10.244.1.5:8080"``, bare ``default/web:http`` in SEP
chains). Releases before ~1.20 wrote an unnamed port as ``default/web:`` (trailing colon); we
keep the written form in :attr:`Comment.spn` and give the normalised one in
:func:`service_port_name`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from netproxy.kubeview.names import normalise_spn
from netproxy.textsafe import digits

_SPN = r"(?P<spn>[^\s/]+/[^\s]+?)"

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("cluster-ip", rf"^{_SPN} cluster IP$"),
        ("external-ip", rf"^{_SPN} external IP$"),
        ("lb-ip", rf"^{_SPN} loadbalancer IP$"),
        ("no-endpoints", rf"^{_SPN} has no endpoints$"),
        ("no-local-endpoints", rf"^{_SPN} has no local endpoints$"),
        ("health-check", rf"^{_SPN} health check node port$"),
        ("endpoint", rf"^{_SPN} -> (?P<endpoint>\S+)$"),
        ("fw-drop", rf"^{_SPN} traffic not accepted by KUBE-FW-\S+$"),
        ("fw-other", rf"^other traffic to {_SPN} will be dropped by KUBE-PROXY-FIREWALL$"),
        ("ext-masq", rf"^masquerade traffic for {_SPN} external destinations$"),
        ("ext-pod", rf"^pod traffic for {_SPN} external destinations$"),
        ("ext-local-masq", rf"^masquerade LOCAL traffic for {_SPN} external destinations$"),
        ("ext-local-route", rf"^route LOCAL traffic for {_SPN} external destinations$"),
        ("xlb-local-masq", rf"^masquerade LOCAL traffic for {_SPN} LB IP$"),
        ("xlb-local-route", rf"^route LOCAL traffic for {_SPN} LB IP to service chain$"),
        ("xlb-balance", rf"^Balancing rule (?P<index>\d+) for {_SPN}$"),
        ("bare", rf"^{_SPN}$"),
    )
)


class Comment(NamedTuple):
    """A parsed kube-proxy comment: the Service port name as written and the rule's role."""

    spn: str
    kind: str
    endpoint: str | None = None


def parse_comment(text: str | None) -> Comment | None:
    """The Service port and role named by a kube-proxy comment, or None for other comments."""
    if not text:
        return None
    for kind, pattern in _PATTERNS:
        found = pattern.match(text)
        if found:
            groups = found.groupdict()
            return Comment(groups["spn"], kind, groups.get("endpoint"))
    return None


service_port_name = normalise_spn
"""``ns/name`` or ``ns/name:port`` with the old trailing ``:`` of unnamed ports dropped."""


def matches_selector(name: str, selector: str, port_numbers: set[int] | None = None) -> bool:
    """Whether Service port ``name`` is selected by ``NS/NAME`` or ``NS/NAME:PORT``.

    PORT is a port name, or a port number matched against ``port_numbers``.
    """
    service, _, port = name.partition(":")
    want_service, sep, want_port = selector.partition(":")
    if service != want_service:
        return False
    if not sep:
        return True
    if want_port == port:
        return True
    return digits(want_port) and port_numbers is not None and int(want_port) in port_numbers


_ODD = "\x80-\U0010ffff"
"""Characters no Kubernetes name has, kept inside a name so that it is shown whole (escaped
on output) rather than cut at them: a Latin-1 byte of an old dump (read as a surrogate),
other non-ASCII letters."""
_SPN_IN_TEXT = re.compile(
    rf"(?<![\w./-])([a-z0-9{_ODD}]([-a-z0-9.{_ODD}]*[a-z0-9{_ODD}])?"
    rf"/[A-Za-z0-9{_ODD}]([-A-Za-z0-9_.{_ODD}]*[A-Za-z0-9{_ODD}])?(:[-a-z0-9{_ODD}]*)?)(?![\w/])")
_ENDPOINT = re.compile(r" -> (\S+)$")


def comment_spn(comment: str | None) -> str | None:
    """The service-port name a kube-proxy comment mentions, if any."""
    if not comment or "/" not in comment:
        return None
    found = _SPN_IN_TEXT.search(comment)
    return normalise_spn(found.group(1)) if found else None


def comment_endpoint(comment: str | None) -> str | None:
    """``ip:port`` of an ``"ns/name:port -> ip:port"`` comment."""
    if not comment:
        return None
    found = _ENDPOINT.search(comment)
    return found.group(1) if found else None


def frontend_kind(comment: str | None, chain: str) -> str | None:
    """What kind of frontend a rule in a shared chain serves, from its comment and chain."""
    text = comment or ""
    if text.endswith("health check node port"):
        return "health check node port"
    if "cluster IP" in text:
        return "cluster IP"
    if "external IP" in text:
        return "external IP"
    if "loadbalancer IP" in text or " LB IP" in text or "traffic not accepted by" in text:
        return "loadbalancer IP"
    if chain == "KUBE-NODEPORTS":
        return "node port"
    return None


def no_endpoint_reason(comment: str | None) -> str | None:
    text = comment or ""
    if text.endswith("has no local endpoints"):
        return "no local endpoints"
    if text.endswith("has no endpoints"):
        return "no endpoints"
    if "traffic not accepted by" in text:
        return "source not allowed"
    return None
