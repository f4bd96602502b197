"""firewall: the nftables ruleset puts each range in the set of its address family, and a /0 range is
refused whatever its address part. Renders roles/firewall/templates/mlflow-ansible.nft.j2 with
ansible-core's own template module on the controller; the preflight cases are hosts of the batched
runs (conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from preflight_cases import FIREWALL_CASES

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "roles" / "firewall" / "templates" / "mlflow-ansible.nft.j2"


def render(tmp_path: Path, variables: dict) -> str:
    dest = tmp_path / "ruleset.nft"
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.template": {"src": str(TEMPLATE), "dest": str(dest), "mode": "0644"}}],
    }]))
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{extra}", str(playbook)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest.read_text()


def elements(ruleset: str, set_name: str) -> list[str]:
    match = re.search(rf"set {set_name} \{{\n[^\n]*\n(?:\s*elements = \{{ (?P<items>[^}}]*) \}}\n)?\s*\}}", ruleset)
    assert match, f"no set {set_name} in:\n{ruleset}"
    return [item.strip() for item in (match.group("items") or "").split(",") if item.strip()]


def test_each_range_lands_in_the_set_of_its_family(tmp_path):
    ruleset = render(tmp_path, {
        "_firewall_https_cidrs": ["10.0.0.0/8", "fd00::/8", "192.168.0.0/16", "2001:db8::/32"],
        "firewall_ssh_cidrs": ["35.235.240.0/20", "::ffff:10.0.0.1/128"],
        "firewall_ssh_port": 22,
        "_firewall_web_ports": [443, 80],
    })
    assert elements(ruleset, "https_v4") == ["10.0.0.0/8", "192.168.0.0/16"]
    assert elements(ruleset, "https_v6") == ["fd00::/8", "2001:db8::/32"]
    assert elements(ruleset, "ssh_v4") == ["35.235.240.0/20"]
    assert elements(ruleset, "ssh_v6") == ["::ffff:10.0.0.1/128"]


def test_an_empty_family_leaves_its_set_empty(tmp_path):
    ruleset = render(tmp_path, {
        "_firewall_https_cidrs": ["10.0.0.0/8"],
        "firewall_ssh_cidrs": ["10.0.0.0/8"],
        "firewall_ssh_port": 22,
        "_firewall_web_ports": [443],
    })
    assert elements(ruleset, "https_v6") == [] and elements(ruleset, "ssh_v6") == []
    assert "tcp dport { 443 } ip saddr @https_v4 accept" in ruleset


@pytest.mark.parametrize(("host", "variable", "refusal"), [(c[0], c[1], c[3]) for c in FIREWALL_CASES],
                         ids=[c[0] for c in FIREWALL_CASES])
def test_a_zero_prefix_is_the_world(bad_inputs, host, variable, refusal):
    outcomes, _ = bad_inputs
    assert f"{variable} {refusal}" in outcomes[host].message, outcomes[host]
    assert not outcomes[host].deployed


def test_a_narrow_range_is_not_mistaken_for_the_world(good_inputs):
    outcomes, output = good_inputs
    assert outcomes["fw-narrow"].failed_task is None and outcomes["fw-narrow"].deployed, output[-3000:]


def test_the_metrics_port_admits_its_own_ranges_only(tmp_path):
    ruleset = render(tmp_path, {
        "_firewall_https_cidrs": ["192.0.2.0/24"],
        "firewall_ssh_cidrs": ["10.0.0.0/8"],
        "firewall_ssh_port": 22,
        "_firewall_web_ports": [443, 80],
        "_firewall_metrics_ports": [9443],
        "_firewall_metrics_cidrs": ["10.1.2.3/32", "fd00::/8"],
    })
    assert elements(ruleset, "metrics_v4") == ["10.1.2.3/32"]
    assert elements(ruleset, "metrics_v6") == ["fd00::/8"]
    assert "tcp dport { 9443 } ip saddr @metrics_v4 accept" in ruleset
    assert "tcp dport { 9443 } ip6 saddr @metrics_v6 accept" in ruleset
    # The web ports' rules do not name the metrics port.
    assert re.search(r"tcp dport \{ 443, 80 \} ip saddr @https_v4 accept", ruleset)


def test_no_metrics_rule_when_metrics_are_off(tmp_path):
    ruleset = render(tmp_path, {
        "_firewall_https_cidrs": ["192.0.2.0/24"], "firewall_ssh_cidrs": ["10.0.0.0/8"], "firewall_ssh_port": 22,
        "_firewall_web_ports": [443, 80], "_firewall_metrics_ports": [], "_firewall_metrics_cidrs": [],
    })
    assert elements(ruleset, "metrics_v4") == [] and "@metrics_v4" not in ruleset
