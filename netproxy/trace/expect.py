"""What a trace was expected to answer (``--expect``, ``--expect-masquerade``), checked
against every outcome, and the exit status a script sees.

Exit status of ``netproxy trace``:

* 0 -- every outcome is definite (and, with ``--expect``, every outcome agrees);
* 1 -- with ``--expect``/``--expect-masquerade``: some outcome disagrees;
* 2 -- bad input (the CLI's usual);
* 3 -- some outcome is UNKNOWN (the tracer could not decide it) and none disagrees.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from netproxy.errors import TraceError
from netproxy.textsafe import digits
from netproxy.trace.result import Outcome, TraceResult, percent

EXIT_OK = 0
EXIT_DISAGREES = 1
EXIT_UNKNOWN = 3

VERDICTS = {"accept": "ACCEPT", "drop": "DROP", "reject": "REJECT"}


@dataclass(frozen=True, slots=True)
class Expectation:
    """The answers allowed: verdicts (``ACCEPT``...) and DNAT endpoints (``ip`` or
    ``ip:port``); ``masquerade`` True/False/None (not asked)."""

    verdicts: frozenset[str] = frozenset()
    endpoints: tuple[tuple[str, int | None], ...] = ()
    masquerade: bool | None = None

    @property
    def empty(self) -> bool:
        return not self.verdicts and not self.endpoints and self.masquerade is None

    def describe(self) -> str:
        items = sorted(v.lower() for v in self.verdicts)
        items += [f"{ip}:{port}" if port is not None else ip for ip, port in self.endpoints]
        return ",".join(items)


def parse_expectation(expect: str | None, masquerade: str | None) -> Expectation:
    """``--expect accept|drop|reject|ENDPOINT[,...]`` and ``--expect-masquerade yes|no``."""
    verdicts: set[str] = set()
    endpoints: list[tuple[str, int | None]] = []
    for item in (expect or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.lower() in VERDICTS:
            verdicts.add(VERDICTS[item.lower()])
            continue
        endpoints.append(_endpoint(item))
    if expect is not None and not verdicts and not endpoints:
        raise TraceError("expected accept, drop, reject or ENDPOINT (IP or IP:PORT), comma-separated",
                         where="--expect")
    masq = None if masquerade is None else masquerade == "yes"
    return Expectation(frozenset(verdicts), tuple(endpoints), masq)


def _endpoint(text: str) -> tuple[str, int | None]:
    host, port = text, None
    if text.startswith("["):  # [2001:db8::1]:80
        host, _, rest = text[1:].partition("]")
        port = _port(rest[1:], text) if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, text)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise TraceError(f"{text!r} is neither accept, drop, reject nor an endpoint IP[:PORT]",
                         where="--expect") from None


def _port(text: str, item: str) -> int:
    if not digits(text) or not 0 < int(text) < 65536:
        raise TraceError(f"bad port in {item!r}", where="--expect")
    return int(text)


def disagreement(outcome: Outcome, expectation: Expectation) -> str | None:
    """Why ``outcome`` disagrees with ``expectation``, or None when it agrees (or is
    UNKNOWN: that is not a disagreement but an unanswered question)."""
    if outcome.verdict == "UNKNOWN":
        return None
    if expectation.verdicts or expectation.endpoints:
        ok = outcome.verdict in expectation.verdicts
        if not ok and outcome.verdict == "ACCEPT" and outcome.dnat is not None:
            ip, _, port = outcome.dnat.rpartition(":")
            ip = ip.strip("[]")
            ok = any(ip == want_ip and (want_port is None or str(want_port) == port)
                     for want_ip, want_port in expectation.endpoints)
        if not ok:
            return f"expected {expectation.describe()}"
    if expectation.masquerade is not None:
        masqueraded = outcome.verdict == "ACCEPT" and outcome.masquerade
        if masqueraded != expectation.masquerade:
            return "expected " + ("masqueraded" if expectation.masquerade else "not masqueraded")
    return None


def _answer(outcome: Outcome) -> str:
    if outcome.verdict != "ACCEPT":
        return outcome.verdict
    parts = ["ACCEPT", f"DNAT to {outcome.dnat}" if outcome.dnat else "without DNAT"]
    parts.append("masqueraded" if outcome.masquerade else "not masqueraded")
    return ", ".join(parts)


def check(results: Sequence[TraceResult], expectation: Expectation) -> tuple[int, list[str]]:
    """The exit status for ``results`` and one line per outcome that disagrees."""
    problems: list[str] = []
    unknown = False
    many = len(results) > 1
    for n, result in enumerate(results, 1):
        for k, outcome in enumerate(result.outcomes, 1):
            if outcome.verdict == "UNKNOWN":
                unknown = True
                continue
            if expectation.empty:
                continue
            why = disagreement(outcome, expectation)
            if why is not None:
                where = f"packet {n}, " if many else ""
                cond = f" if {' and '.join(outcome.conditions())}" if outcome.assumes else ""
                problems.append(f"{where}outcome {k} ({percent(outcome.probability)}{cond}): "
                                f"{_answer(outcome)}; {why}")
    if problems:
        return EXIT_DISAGREES, problems
    return (EXIT_UNKNOWN if unknown else EXIT_OK), problems
