"""netproxy migrate (compiled cluster in both modes) and diff --behaviour across modes
(an iptables-mode dump before, an nftables-mode listing after)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netproxy.cli import main
from netproxy.migrate import probes as p
from netproxy.migrate.expected import classify
from netproxy.proxy.nodeports import nodeport_addresses
from netproxy.trace import Packet

REPO = Path(__file__).resolve().parents[1]
CLUSTER = [str(REPO / "fixtures" / "example-cluster"),
           str(REPO / "tests" / "data" / "migrate" / "extra.yaml")]
ALL_EXPECTED = {"nodeport-addresses", "localhost-nodeports", "source-ranges-first",
                "cluster-ip-other-ports", "unallocated-service-ips",
                "hairpin-local-endpoints-only"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def migrate_json(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict]:
    code, out, err = run(capsys, "migrate", *CLUSTER, "--local-ip", "172.17.0.1", "--json",
                         *flags)
    assert err == ""
    return code, json.loads(out)


def groups(report: dict) -> dict[str, dict]:
    return {g["key"]: g for g in report["expected"]}


def test_every_intended_difference_is_named_with_its_services(capsys):
    code, report = migrate_json(capsys)
    assert code == 0 and report["verdict"] == "expected" and report["findings"] == []
    found = groups(report)
    assert set(found) == ALL_EXPECTED
    assert found["nodeport-addresses"]["services"] == [
        "shop/admin:https", "shop/checkout:https", "shop/frontend:http", "shop/ingress:http"]
    # only the second node address lost its NodePorts; the primary one behaves the same
    assert {d["probe"].split(" ")[1].split(":")[0]
            for d in found["nodeport-addresses"]["differences"]} == {"172.17.0.1"}
    assert "0.0.0.0/0" in found["nodeport-addresses"]["avoid"]
    local = found["localhost-nodeports"]["differences"]
    assert {d["source"] for d in local} == {"localhost"} and len(local) == 4
    assert all(d["nftables"] == ["100.00% ACCEPT"] for d in local)
    by_service = {d["service"]: d["iptables"] for d in local}
    assert by_service["shop/admin:https"] == ["100.00% REJECT"]  # no endpoints
    assert any("DNAT" in line for line in by_service["shop/frontend:http"])
    ranges = found["source-ranges-first"]
    assert ranges["services"] == ["shop/admin:https"]
    assert {d["source"] for d in ranges["differences"]} == {
        p.POD_HERE, p.POD_ELSEWHERE, p.NODE, p.OUT_OF_RANGE}
    assert [d["probe"] for d in found["unallocated-service-ips"]["differences"]] == [
        "tcp 10.96.16.225:80 (unallocated-service-ip) from pod on this node 10.244.1.250"]
    assert {n["key"] for n in report["notes"]} == {"host-firewall", "health-check-nodeports",
                                                    "conntrack-invalid"}
    assert report["probes"] == report["alike"] + sum(
        len(g["differences"]) for g in report["expected"])


def test_settings_that_avoid_a_difference_remove_its_group(capsys):
    code, report = migrate_json(capsys, "--nodeport-addresses", "0.0.0.0/0",
                                "--conntrack-tcp-be-liberal")
    assert code == 0
    assert "nodeport-addresses" not in groups(report)
    assert "conntrack-invalid" not in {n["key"] for n in report["notes"]}


def test_localhost_nodeports_gate_rejects_them(capsys):
    code, report = migrate_json(capsys, "--feature-gates",
                                "KubeProxyNFTablesLocalhostNodePorts=true")
    assert code == 0
    local = groups(report)["localhost-nodeports"]["differences"]
    assert all(d["nftables"] == ["100.00% REJECT"] for d in local)


def test_session_affinity_and_shares_compared(capsys, tmp_path):
    code, report = migrate_json(capsys)
    # the cart Service (ClientIP affinity) behaves alike but for the hairpin of its
    # endpoints elsewhere (both on other nodes): no other group names it
    assert [g["key"] for g in report["expected"] if "shop/cart:grpc" in g["services"]] == [
        "hairpin-local-endpoints-only"]
    # an nftables side that lost the affinity is a finding, shown by a second connection
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    for f in (REPO / "fixtures" / "example-cluster").iterdir():
        text = f.read_text()
        (cluster / f.name).write_text(text.replace("sessionAffinity: ClientIP",
                                                   "sessionAffinity: None"))
    before, after = tmp_path / "before.rules", tmp_path / "after.nft"
    assert run(capsys, "compile", CLUSTER[0], "-o", str(before))[0] == 0
    assert run(capsys, "compile", str(cluster), "--proxy-mode", "nftables",
               "-o", str(after))[0] == 0
    code, out, _ = run(capsys, "diff", "--behaviour", str(before), str(after), "--json")
    assert code == 1
    cart = [d for d in json.loads(out)["findings"] if d["service"] == "shop/cart:grpc"]
    assert cart and all("100.00% next connection from this client: same endpoint"
                        in d["iptables"] for d in cart)
    assert all("50.00% next connection from this client: same endpoint" in d["nftables"]
               for d in cart)


def test_text_report(capsys):
    code, out, _ = run(capsys, "migrate", *CLUSTER)
    assert code == 0
    assert "expected: NodePorts on localhost are not forwarded (§12.2; 4 probes)" in out
    assert "    services: shop/admin:https, shop/checkout:https, shop/frontend:http, " \
           "shop/ingress:http" in out
    assert out.rstrip().endswith("only the differences kube-proxy intends")
    assert "nodePortAddresses defaults" not in out  # one node address: nothing lost


def test_bad_input_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata: [\n")
    code, out, err = run(capsys, "migrate", str(bad))
    assert code == 2 and out == "" and err.startswith("netproxy: ")
    code, _, err = run(capsys, "migrate", *CLUSTER, "--local-ip", "nope")
    assert code == 2 and "--local-ip" in err


def test_a_difference_not_in_the_notes_is_a_finding():
    probe = p.Probe("ns/svc:http", p.LOCALHOST_NODE_PORT, p.LOCALHOST,
                    Packet("127.0.0.1", "127.0.0.1", "tcp", 30080, origin="localhost"))
    npa = nodeport_addresses((), "ipv4")
    old = {"ACCEPT DNAT 10.244.1.5:80 masquerade": 1.0}
    assert classify(probe, old, {"ACCEPT": 1.0}, old_nodeports=npa,
                    new_nodeports=npa) == "localhost-nodeports"
    # still DNATed in nftables mode, but elsewhere: not what kube-proxy intends
    assert classify(probe, old, {"ACCEPT DNAT 10.244.9.9:80": 1.0}, old_nodeports=npa,
                    new_nodeports=npa) is None
    other = p.Probe("ns/svc", p.OTHER_PORT, p.POD_HERE, Packet("10.96.0.1", "10.244.0.5"))
    assert classify(other, {"ACCEPT": 1.0}, {"REJECT": 1.0}, old_nodeports=npa,
                    new_nodeports=npa) == "cluster-ip-other-ports"
    assert classify(other, {"ACCEPT": 1.0}, {"DROP": 1.0}, old_nodeports=npa,
                    new_nodeports=npa) is None


@pytest.fixture
def states(tmp_path, capsys) -> tuple[Path, Path, Path]:
    """The example cluster's iptables dump, its nftables listing, and a listing compiled
    with --masquerade-all (a real behaviour change)."""
    before, after, masq = tmp_path / "before.rules", tmp_path / "after.nft", tmp_path / "m.nft"
    assert run(capsys, "compile", *CLUSTER, "-o", str(before))[0] == 0
    assert run(capsys, "compile", *CLUSTER, "--proxy-mode", "nftables", "-o", str(after))[0] == 0
    assert run(capsys, "compile", *CLUSTER, "--proxy-mode", "nftables", "--masquerade-all",
               "-o", str(masq))[0] == 0
    return before, after, masq


def test_diff_behaviour_across_modes(capsys, states):
    before, after, _ = states
    code, out, err = run(capsys, "diff", "--behaviour", str(before), str(after), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["findings"] == []
    found = groups(report)
    assert set(found) == ALL_EXPECTED - {"nodeport-addresses"}
    assert found["source-ranges-first"]["services"] == ["shop/admin:https"]
    assert "media/voice" in found["cluster-ip-other-ports"]["services"]
    code, text, _ = run(capsys, "diff", "--behaviour", str(before), str(after))
    assert code == 0 and text.startswith(f"--- iptables mode: {before}\n")


def test_diff_across_modes_finds_what_the_notes_do_not_explain(capsys, states):
    before, _, masq = states
    code, out, _ = run(capsys, "diff", "--behaviour", str(before), str(masq), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["verdict"] == "findings"
    pod_to_cart = [d for d in report["findings"]
                   if d["service"] == "shop/cart:grpc" and d["source"] == p.POD_HERE
                   and d["frontend"] == p.CLUSTER_IP]
    assert pod_to_cart and all("masquerade" not in line for line in pod_to_cart[0]["iptables"])
    assert any("masquerade" in line for line in pod_to_cart[0]["nftables"])
    code, text, _ = run(capsys, "diff", "--behaviour", str(before), str(masq))
    assert code == 1 and "! finding: shop/cart:grpc: tcp 10.96.100.40:9000" in text


def test_diff_across_modes_wants_iptables_first(capsys, states):
    before, after, _ = states
    code, out, err = run(capsys, "diff", "--behaviour", str(after), str(before))
    assert code == 2 and out == ""
    assert f"netproxy diff --behaviour {before} {after}" in err


def test_dual_stack_reports_each_family(capsys):
    inputs = str(REPO / "tests" / "golden" / "compile" / "ipv6-dualstack" / "inputs")
    code, out, _ = run(capsys, "migrate", inputs, "--family", "dual", "--hostname-override",
                       "node-1", "--node-ip", "192.168.0.10", "--node-ip", "2001:db8:ffff::10",
                       "--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56", "--service-cidr",
                       "10.96.0.0/16,fd00:10:96::/112", "--json")
    assert code == 0
    families = json.loads(out)["families"]
    assert [r["family"] for r in families.values()] == ["ipv4", "ipv6"]
    # kube-proxy never forwarded IPv6 NodePorts on localhost: nothing to lose there
    assert "localhost-nodeports" in groups(families["ipv4"])
    assert set(groups(families["ipv6"])) == {"cluster-ip-other-ports", "unallocated-service-ips",
                                             "hairpin-local-endpoints-only"}
    assert groups(families["ipv6"])["unallocated-service-ips"]["differences"][0]["probe"] \
        .startswith("tcp [fd00:10:96::")


def test_hairpin_of_an_endpoint_elsewhere_is_named(capsys):
    """§12.7: iptables mode marks every endpoint's own connection back to itself for
    masquerade (``-s EP``), nftables mode only this node's endpoints (@hairpin-connections)."""
    code, report = migrate_json(capsys, "--all")
    assert code == 0
    hairpin = groups(report)["hairpin-local-endpoints-only"]
    assert "--masquerade-all" in hairpin["avoid"] and hairpin["spec"] == "§12.7"
    frontend = [d for d in hairpin["differences"] if d["service"] == "shop/frontend:http"]
    assert [d["probe"] for d in frontend] == [
        "tcp 10.96.100.10:80 (cluster-ip) from an endpoint of it on another node (hairpin) "
        "10.244.2.10"]
    assert "33.33% ACCEPT DNAT 10.244.2.10:8080 masquerade" in frontend[0]["iptables"]
    assert "33.33% ACCEPT DNAT 10.244.2.10:8080" in frontend[0]["nftables"]
    assert "33.33% ACCEPT DNAT 10.244.1.10:8080" in frontend[0]["nftables"]
    # this node's endpoint (10.244.1.10) is masqueraded back to itself in both modes: alike
    assert all(d["source"] != p.ENDPOINT_HERE for g in report["expected"]
               for d in g["differences"])
    code, report = migrate_json(capsys, "--masquerade-all")
    assert code == 0 and "hairpin-local-endpoints-only" not in groups(report)


def test_hairpin_only_when_just_the_self_branch_lost_its_masquerade():
    probe = p.Probe("ns/svc:http", p.CLUSTER_IP, p.ENDPOINT_ELSEWHERE,
                    Packet("10.96.0.5", "10.244.2.7", "tcp", 80, origin="external"))
    npa = nodeport_addresses((), "ipv4")
    old = {"ACCEPT DNAT 10.244.2.7:80 masquerade": 0.5, "ACCEPT DNAT 10.244.1.7:80": 0.5}
    kw = {"old_nodeports": npa, "new_nodeports": npa}
    assert classify(probe, old, {"ACCEPT DNAT 10.244.2.7:80": 0.5,
                                 "ACCEPT DNAT 10.244.1.7:80": 0.5}, **kw) \
        == "hairpin-local-endpoints-only"
    # another endpoint's masquerade changed too: not the hairpin difference
    assert classify(probe, old, {"ACCEPT DNAT 10.244.2.7:80": 0.5,
                                 "ACCEPT DNAT 10.244.1.7:80 masquerade": 0.5}, **kw) is None
    # the shares moved
    assert classify(probe, old, {"ACCEPT DNAT 10.244.2.7:80": 0.25,
                                 "ACCEPT DNAT 10.244.1.7:80": 0.75}, **kw) is None


def test_migrate_findings_exit_1_with_json(capsys, monkeypatch):
    import netproxy.migrate.report as report_module

    monkeypatch.setattr(report_module, "classify", lambda *a, **k: None)
    code, report = migrate_json(capsys)
    assert code == 1 and report["verdict"] == "findings" and report["findings"]
    code, out, _ = run(capsys, "migrate", *CLUSTER)
    assert code == 1 and out.rstrip().endswith("findings: behaviour kube-proxy's migration "
                                               "notes do not explain")


def test_no_services_behave_the_same_exit_0(capsys, tmp_path):
    node = [str(REPO / "fixtures" / "example-cluster" / n)
            for n in ("node.yaml", "kube-proxy-config.yaml")]
    code, out, _ = run(capsys, "migrate", *node, "--json")
    assert code == 0 and json.loads(out)["verdict"] == "same"
    before, after = tmp_path / "b.rules", tmp_path / "a.nft"
    assert run(capsys, "compile", *node, "-o", str(before))[0] == 0
    assert run(capsys, "compile", *node, "--proxy-mode", "nftables", "-o", str(after))[0] == 0
    code, out, _ = run(capsys, "diff", "--behaviour", str(before), str(after), "--json")
    assert code == 0 and json.loads(out)["verdict"] == "same"


def _snapshot(rules: str | None, nft: str | None, extra_addr: str) -> str:
    """A node snapshot holding iptables-mode ``rules`` or nftables-mode ``nft``: eth0
    192.168.0.11, cni0 10.244.1.1 (its pods' 10.244.1.0/24 directly connected) and
    ``extra_addr`` on docker0."""
    from test_node_snapshot import ADDR, ROUTES4, RULES4

    from netproxy.node.snapshot import ORDER

    addr = [*ADDR, {"ifname": "docker0", "addr_info": [
        {"family": "inet", "local": extra_addr, "prefixlen": 16, "scope": "global"}]}]
    bodies = {"hostname": "node-1\n", "versions": "ip: iproute2-6.1.0\n",
              "iptables-save (legacy)": rules, "nft list ruleset": nft,
              "ip -j addr": json.dumps(addr) + "\n",
              "ip -4 -j route show table all": json.dumps(ROUTES4) + "\n",
              "ip -6 -j route show table all": "[]\n", "ip -4 -j rule": json.dumps(RULES4) + "\n",
              "ip -6 -j rule": "[]\n", "ip -j link": "[]\n",
              "sysctl": "net.ipv4.ip_forward = 1\n", "notes": ""}
    out = ["# netproxy node snapshot v1\n"]
    out += [f"### {name}\n{bodies[name]}" for name in ORDER if bodies.get(name) is not None]
    return "".join(out) + "### end\n"


def test_two_snapshots_read_node_addresses_pods_and_nodeport_addresses(capsys, tmp_path,
                                                                       states):
    before, after, _ = states
    b, a = tmp_path / "before.snap", tmp_path / "after.snap"
    b.write_text(_snapshot(before.read_text(), None, "172.17.0.1"))
    a.write_text(_snapshot(None, after.read_text(), "172.17.0.1"))
    code, out, err = run(capsys, "diff", "--behaviour", str(b), str(a), "--json")
    assert code == 0, err
    report = json.loads(out)
    context = "\n".join(report["context"])
    assert "node addresses 192.168.0.11, 10.244.1.1, 172.17.0.1 (the addresses of snapshot" \
        in context
    assert "NodePorts in iptables mode: every local address" in context
    assert "this node's pods 10.244.1.0/24 (from the snapshot's routes)" in context
    assert "pod here 10.244.1.250, pod elsewhere 10.244.128.250" in context
    found = groups(report)
    assert set(found) == ALL_EXPECTED
    lost = {d["probe"].split(" ")[1].rsplit(":", 1)[0]
            for d in found["nodeport-addresses"]["differences"]}
    assert lost == {"10.244.1.1", "172.17.0.1"}
    sources = {d["source"] for g in report["expected"] for d in g["differences"]}
    assert {p.POD_ELSEWHERE, p.ENDPOINT_ELSEWHERE} <= sources
    # the same as netproxy migrate with the same node addresses
    code, mig = migrate_json(capsys, "--local-ip", "10.244.1.1")
    for key in ALL_EXPECTED:
        texts = {d["probe"] for d in groups(mig)[key]["differences"]}
        assert texts == {d["probe"] for d in found[key]["differences"]}, key


def test_iptables_nodeport_addresses_are_read_from_the_rules(capsys, tmp_path, states):
    _, after, _ = states
    before = tmp_path / "np.rules"
    assert run(capsys, "compile", *CLUSTER, "--nodeport-addresses", "192.168.0.0/24",
               "-o", str(before))[0] == 0
    code, out, _ = run(capsys, "diff", "--behaviour", str(before), str(after), "--json",
                       "--local-ip", "192.168.0.11", "--local-ip", "172.17.0.1")
    report = json.loads(out)
    assert any("NodePorts in iptables mode: only 192.168.0.11/32" in c for c in report["context"])
    # iptables mode already left 172.17.0.1 alone: nothing lost by the switch there ...
    assert "nodeport-addresses" not in groups(report)
    # ... but its filter-side REJECT of a NodePort without endpoints matches every local
    # address whatever --nodeport-addresses says; nftables mode's only the nodeport-ips:
    # a real change the notes do not list (netproxy migrate finds it too)
    assert code == 1
    assert {(d["service"], d["probe"].split(" ")[1], tuple(d["iptables"]), tuple(d["nftables"]))
            for d in report["findings"]} == {
        ("shop/admin:https", "172.17.0.1:31444", ("100.00% REJECT",), ("100.00% ACCEPT",))}
    code, mig = migrate_json(capsys, "--nodeport-addresses", "192.168.0.0/24")
    assert code == 1 and {d["probe"] for d in mig["findings"]} == {
        d["probe"] for d in report["findings"]}
    code, out, _ = run(capsys, "diff", "--behaviour", str(states[0]), str(after), "--json",
                       "--local-ip", "192.168.0.11", "--local-ip", "172.17.0.1")
    assert code == 0 and "nodeport-addresses" in groups(json.loads(out))


def test_diff_across_modes_bad_input_is_exit_2(capsys, tmp_path, states):
    _, after, _ = states
    bad = tmp_path / "bad.rules"
    bad.write_text("*nat\n-A KUBE-SERVICES -j\n")
    code, out, err = run(capsys, "diff", "--behaviour", str(bad), str(after), "--json")
    assert code == 2 and out == "" and err.startswith("netproxy: ")


def test_the_pod_here_is_no_endpoint_while_one_is_free_and_said_when_none_is() -> None:
    # The last hosts of the node's pod CIDR are endpoints: the search goes round to its first.
    taken = {f"10.244.1.{n}" for n in range(250, 255)}
    s = p.pod_sources("ipv4", ["10.244.0.0/16"], ["10.244.1.0/24"], "192.168.0.1", taken)
    assert s.pod_here == "10.244.1.1" and s.note is None
    # Every host of a /30 is an endpoint: a source that is one anyway, and it is said.
    s = p.pod_sources("ipv4", ["10.244.0.0/16"], ["10.244.1.0/30"], "192.168.0.1",
                      {"10.244.1.1", "10.244.1.2"})
    assert s.pod_here == "10.244.1.2"
    assert s.note == ("every address of 10.244.1.0/30 tried is an endpoint's: the probes from a "
                      "pod on this node come from 10.244.1.2, itself an endpoint (hairpin "
                      "connections)")
