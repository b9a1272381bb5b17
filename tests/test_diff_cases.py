"""netproxy diff on small hand-made dump pairs (tests/data/diff): one case per kind of change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netproxy.cli import main
from netproxy.diff import diff_rulesets, render_text
from netproxy.diff.load import load_ruleset

DATA = Path(__file__).resolve().parent / "data" / "diff"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diff", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def report(new: str, old: str = "base"):
    return diff_rulesets(load_ruleset(str(DATA / f"{old}.rules")), load_ruleset(str(DATA / f"{new}.rules")))


def facts(rep, title: str) -> list[str]:
    group = next(g for g in rep.groups if g.title == title)
    return [f"{f.sign} {f.text}" for f in group.facts]


def test_identical_rulesets_written_differently_are_equivalent(capsys):
    # Other table and chain order, counters, payload spelling, swapped KUBE-SERVICES jumps.
    code, out, _ = run(capsys, str(DATA / "base.rules"), str(DATA / "shuffled.rules"))
    assert code == 0
    assert out.splitlines()[-1] == "equivalent"
    rep = report("shuffled")
    assert rep.groups == [] and rep.findings == []


def test_order_of_dependent_rules_still_matters():
    rep = report("endpoints-swapped")
    assert not rep.text_equivalent
    assert facts(rep, "default/echo tcp") == [
        "= endpoint 10.244.0.5:5678 (cluster) moved 1 -> 2, share unchanged 50.00%",
        "= endpoint 10.244.1.9:5678 (cluster) moved 2 -> 1, share unchanged 50.00%",
    ]


def test_one_endpoint_removed(capsys):
    code, out, _ = run(capsys, str(DATA / "base.rules"), str(DATA / "endpoint-removed.rules"))
    assert code == 1
    rep = report("endpoint-removed")
    assert [g.title for g in rep.groups] == ["default/web:http tcp"]
    assert facts(rep, "default/web:http tcp")[:2] == [
        "- endpoint 10.244.2.7:8080 (cluster, was 50.00%)",
        "~ endpoint 10.244.1.5:8080 (cluster) share 50.00% -> 100.00% (probability 0.50000000000 -> rest)",
    ]
    assert rep.summary["endpoints_removed"] == 1 and rep.summary["endpoints_changed"] == 1
    assert "      - -A KUBE-SEP-2RIJ5GIYXEFH6G4D -p tcp -m comment --comment \"default/web:http\" " \
           "-m tcp -j DNAT --to-destination 10.244.2.7:8080" in out.splitlines()
    assert out.splitlines()[-1] == "different"


def test_service_added():
    rep = report("service-added")
    group = rep.groups[0]
    assert (group.title, group.status) == ("default/api:grpc tcp", "added")
    assert "+ frontend cluster IP 10.96.30.30:9090 -> SVC" in facts(rep, "default/api:grpc tcp")
    assert "+ endpoint 10.244.1.20:9090 (cluster, 100.00%)" in facts(rep, "default/api:grpc tcp")
    assert rep.summary["services_added"] == 1
    assert {(r.sign, r.chain) for r in group.rules} == {
        ("+", "KUBE-SERVICES"), ("+", "KUBE-SVC-BEA4T34QEWGUELNC"), ("+", "KUBE-SEP-MVNKPFHNOTT2IGKZ")}


def test_reverse_direction_reports_service_removed():
    rep = report("base", old="service-added")
    assert rep.groups[0].status == "removed"
    assert rep.summary["services_removed"] == 1


def test_partial_sync_that_forgot_a_chain():
    rep = report("partial-forgot")
    got = facts(rep, "default/echo tcp")
    assert "+ endpoint 10.244.2.9:5678 (cluster, 33.33%)" in got
    # Plain diff says what the missing chain does to new connections, not only --behaviour.
    assert ("! 33.33% of new connections (cluster) now fall through KUBE-SVC-HV6DMF63W6MGLRDE without "
            "DNAT, on to the Service address that nothing answers: KUBE-SEP-F5QH6TV4YGLZK6ZP "
            "(10.244.2.9:5678) missing or without DNAT") in got
    assert ("! dangling in new: nat KUBE-SVC-HV6DMF63W6MGLRDE jumps to KUBE-SEP-F5QH6TV4YGLZK6ZP, "
            "which does not exist") in got
    assert rep.summary["dangling_new"] == 1 and rep.summary["dangling_old"] == 0


def test_stale_endpoint_chain():
    rep = report("stale-sep")
    got = facts(rep, "default/web:http tcp")
    assert ("! stale in new: nat KUBE-SEP-C2JQYSXHMAEDJ7T5 nothing jumps to it "
            "(default/web:http tcp, endpoint 10.244.9.9:8080)") in got
    assert rep.summary["stale_new"] == 1
    assert not rep.equivalent


def test_rename_only_is_equivalent_unless_strict(capsys):
    code, out, _ = run(capsys, str(DATA / "base.rules"), str(DATA / "renamed.rules"))
    assert code == 0
    assert "    = chain nat KUBE-SEP-AFGSLHOD2HFNCBX4 renamed to KUBE-SEP-ZZRENAMEDCHAIN01" in out
    assert out.splitlines()[-1] == "equivalent (only chain names differ)"
    code, _, _ = run(capsys, "--strict-names", str(DATA / "base.rules"), str(DATA / "renamed.rules"))
    assert code == 1


def test_non_kube_chains_are_plain_rule_diffs():
    rep = report("docker-changed")
    assert [(g.kind, g.title) for g in rep.groups] == [("other", "filter DOCKER-USER"), ("other", "nat DOCKER")]
    assert [(r.sign, r.text) for r in rep.groups[0].rules] == [("+", "-A DOCKER-USER -s 192.168.0.0/16 -j DROP")]
    assert [(r.sign, r.text) for r in rep.groups[1].rules] == [("-", "-A DOCKER -i docker0 -j RETURN")]
    assert rep.summary["other_rules_added"] == 1 and rep.summary["kube_rules_added"] == 0


def test_kube_scope_ignores_other_programs(capsys):
    code, _, _ = run(capsys, "--scope", "kube", str(DATA / "base.rules"), str(DATA / "docker-changed.rules"))
    assert code == 0


def test_json_has_the_same_content(capsys):
    code, out, _ = run(capsys, "--json", str(DATA / "base.rules"), str(DATA / "endpoint-removed.rules"))
    assert code == 1
    data = json.loads(out)
    assert data["equivalent"] is False
    text = render_text(report("endpoint-removed"))
    for group in data["groups"]:
        assert group["title"] in text
        for fact in group["facts"]:
            assert f"{fact['sign']} {fact['text']}" in text
        for rule in group["rules"]:
            assert f"{rule['sign']} {rule['text']}" in text
    assert data["summary"]["endpoints_removed"] == 1


def test_broken_dump_is_one_line_with_line_number(capsys):
    code, out, err = run(capsys, str(DATA / "base.rules"), str(DATA / "broken.rules"))
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [f"netproxy: {DATA / 'broken.rules'}:41:38: unterminated quote"]


@pytest.mark.parametrize("text,expect", [
    ("hello world\n", ":1:"),
    ("", "empty file"),
    ("*nat\n:FOO - [0:0]\n-A FOO -j ACCEPT\n", "has no COMMIT"),
])
def test_not_a_dump(tmp_path, capsys, text, expect):
    bad = tmp_path / "bad.rules"
    bad.write_text(text)
    code, out, err = run(capsys, str(DATA / "base.rules"), str(bad))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expect in err


def test_wrong_argument_count(capsys):
    code, _, err = run(capsys, str(DATA / "base.rules"))
    assert code == 2 and "two rulesets" in err


def _large_cluster_mode(text: str) -> str:
    """kube-proxy's large-cluster mode: no per-endpoint comments in SVC/SVL and SEP chains."""
    import re

    out = []
    for line in text.splitlines():
        if line.startswith(("-A KUBE-SEP-", "-A KUBE-SVC-", "-A KUBE-SVL-")) and (
                " -> " in line or "cluster IP" not in line):
            line = re.sub(r' -m comment --comment "[^"]*"', "", line)
        out.append(line)
    return "\n".join(out) + "\n"


def test_large_cluster_mode_rename_and_endpoint_change():
    from netproxy.parser import parse_rules

    base = _large_cluster_mode((DATA / "base.rules").read_text())
    assert "default/web:http -> " not in base and '"default/web:http cluster IP"' in base
    renamed = base.replace("KUBE-SEP-AFGSLHOD2HFNCBX4", "KUBE-SEP-ZZRENAMEDCHAIN01")
    rep = diff_rulesets(parse_rules(base, source="a"), parse_rules(renamed, source="b"))
    assert rep.equivalent and [g.title for g in rep.groups] == ["default/web:http tcp"]
    removed = _large_cluster_mode((DATA / "endpoint-removed.rules").read_text())
    rep = diff_rulesets(parse_rules(base, source="a"), parse_rules(removed, source="b"))
    assert facts(rep, "default/web:http tcp")[0] == "- endpoint 10.244.2.7:8080 (cluster, was 50.00%)"


def test_chain_declared_but_left_empty():
    # A restore that declared (flushed) an endpoint chain but forgot its rules.
    rep = report("emptied-sep")
    assert facts(rep, "default/echo tcp") == [
        "! 50.00% of new connections (cluster) now fall through KUBE-SVC-HV6DMF63W6MGLRDE without DNAT, "
        "on to the Service address that nothing answers: KUBE-SEP-L5QMNQ7OSVWN2BEA (10.244.1.9:5678) "
        "missing or without DNAT",
        "~ endpoint 10.244.1.9:5678: hairpin masquerade [-s 10.244.1.9], DNAT to 10.244.1.9:5678 "
        "-> empty chain (no DNAT)"]
    assert [(r.sign, r.chain) for r in rep.groups[0].rules] == [
        ("-", "KUBE-SEP-L5QMNQ7OSVWN2BEA"), ("-", "KUBE-SEP-L5QMNQ7OSVWN2BEA")]


def test_endpoint_chain_without_dnat_before_the_last_shifts_its_share(tmp_path):
    # Flush the first endpoint chain of default/web (three endpoints): its rule still wins a
    # third of the draws, the jump returns, and the next rules draw again.
    base = (DATA / "base.rules").read_text()
    sep = next(line.split()[-1] for line in base.splitlines()
               if line.startswith("-A KUBE-SVC-CDGGSHYLG3RE2FKL") and "--probability" in line)
    flushed = "\n".join(line for line in base.splitlines() if not line.startswith(f"-A {sep} ")) + "\n"
    (tmp_path / "flushed.rules").write_text(flushed)
    rep = diff_rulesets(load_ruleset(str(DATA / "base.rules")), load_ruleset(str(tmp_path / "flushed.rules")))
    got = [f for f in facts(rep, "default/web:http tcp") if f.startswith("!")]
    assert len(got) == 1 and got[0].startswith("! new connections (cluster) now go: ")
    assert f"; {sep} (" in got[0] and got[0].endswith("so its draw goes on to the next rule")
    assert "fall through" not in got[0]


def _latin1_pair(tmp_path: Path) -> tuple[Path, Path]:
    """base / endpoint-removed with a Latin-1 byte (not UTF-8) in the Service's name."""
    paths = []
    for name in ("base", "endpoint-removed"):
        data = (DATA / f"{name}.rules").read_bytes().replace(b"default/web:http", b"default/w\xe9b:http")
        path = tmp_path / f"{name}.rules"
        path.write_bytes(data)
        paths.append(path)
    return paths[0], paths[1]


def test_latin1_byte_in_a_comment_names_the_service_whole_and_escaped(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    old, new = _latin1_pair(tmp_path)
    env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "netproxy", "diff", "--brief", str(old), str(new)],
                          capture_output=True, env=env)
    assert done.returncode == 1, done.stderr
    out = done.stdout.decode("ascii")  # every byte of the old dump escaped
    assert "~ service default/w\\xe9b:http tcp\n" in out
    assert "    - endpoint 10.244.2.7:8080 (cluster, was 50.00%)\n" in out
    assert "service default/w tcp" not in out
    done = subprocess.run([sys.executable, "-m", "netproxy", "diff", "--json", str(old), str(new)],
                          capture_output=True, env=env)
    data = json.loads(done.stdout.decode("utf-8", "strict"))
    assert [g["title"] for g in data["groups"]] == ["default/w\\xe9b:http tcp"]
    assert all("\\xe9" in r["text"] for r in data["groups"][0]["rules"])
    assert data["changed_services"] == [["default/w\\xe9b:http", "tcp"]]
