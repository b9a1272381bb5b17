"""The iptables-save spelling of kube-proxy's payload rules (spec section 8.3)."""

from __future__ import annotations

import pytest

from netproxy.parser import rule_from_args
from netproxy.parser.tokens import split_words
from netproxy.render import rule_text

CASES = [
    ("-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000",
     "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"),
    ("-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000",
     "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0"),
    ("-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN",
     "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"),
    ('-A KUBE-SVC-X -m comment --comment "ns/s:p -> 10.0.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-Y',
     '-A KUBE-SVC-X -m comment --comment "ns/s:p -> 10.0.0.1:80" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-Y'),
    ("-A KUBE-SEP-Y -m comment --comment default/web:http -s 10.244.1.5 -j KUBE-MARK-MASQ",
     '-A KUBE-SEP-Y -s 10.244.1.5/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ'),
    ('-A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" -m tcp -p tcp -d 10.96.10.10 --dport 80 -j REJECT',
     '-A KUBE-SERVICES -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable'),
    ('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
     '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP'),
    ('-A KUBE-SVC-X -m comment --comment "ns/s:p -> 10.0.0.1:80" -m recent --name KUBE-SEP-Y --rcheck --seconds 10800 --reap -j KUBE-SEP-Y',
     '-A KUBE-SVC-X -m comment --comment "ns/s:p -> 10.0.0.1:80" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-Y --mask 255.255.255.255 --rsource -j KUBE-SEP-Y'),
    ("-A KUBE-SVC-X -m comment --comment \"x cluster IP\" -m tcp -p tcp -d 10.96.10.10 --dport 80 ! -i cbr0 -j KUBE-MARK-MASQ",
     "-A KUBE-SVC-X -d 10.96.10.10/32 ! -i cbr0 -p tcp -m comment --comment \"x cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ"),
]


@pytest.mark.parametrize(("payload", "saved"), CASES)
def test_saved_spelling(payload: str, saved: str) -> None:
    words = split_words(payload)
    rule = rule_from_args(words[2:])
    assert rule_text(rule, words[1]) == saved
    assert rule_text(rule, words[1], saved=False) == payload


def test_recent_mask_before_1_8_9() -> None:
    rule = rule_from_args(["-m", "recent", "--name", "S", "--set", "-j", "ACCEPT"])
    assert rule_text(rule, "C", iptables_version=(1, 8, 7)) == (
        "-A C -m recent --set --name S --mask 255.255.255.255 --rsource -j ACCEPT")


def test_ipv6_forms() -> None:
    rule = rule_from_args(["-d", "FD00:0::10", "-p", "tcp", "-j", "REJECT"])
    assert rule_text(rule, "C", "ipv6") == (
        "-A C -d fd00::10/128 -p tcp -j REJECT --reject-with icmp6-port-unreachable")
