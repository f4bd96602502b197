"""The Google side, through Google's own client code against STAND-INS of Google's APIs (gcp_testbed.py):
the google.cloud.gcp_compute inventory of inventory/gcp.yml, a deploy over it from a controller with no
route out, the VPC firewall rule (google.cloud.gcp_compute_firewall), keyless credentials from the
metadata server under the hardened unit, key-file credentials, and the deploy-time errors of a VM whose
service account is missing or cannot write to GCS.

The tests run in order on one testbed (each builds on the state the one before left).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import pytest
from conftest import ca_bundle
from gcp_testbed import PROJECT, REPO, VM_ACCOUNT, GcpTestbed, docker

pytestmark = pytest.mark.integration

NAME = "gcp-e2e"


@pytest.fixture(scope="module")
def gcp(tmp_path_factory) -> GcpTestbed:
    testbed = GcpTestbed(NAME, tmp_path_factory.mktemp("gcp"), ca_bundle())
    try:
        testbed.create()
        yield testbed
    finally:
        testbed.destroy()


def plain(value):
    """ansible-inventory's JSON without ansible-core's markers of untrusted strings."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def recap(output: str) -> dict[str, dict[str, int]]:
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M)
    }


def storage_requests(gcp: GcpTestbed, since: int) -> list[dict]:
    return [r for r in gcp.requests()[since:] if r["host"] == "storage.googleapis.com"]


def roundtrip(gcp: GcpTestbed, state: str) -> None:
    """The real MLflow client on the VM: runs, metrics, a 20 MB artifact and a model version, read back."""
    script = "/root/verify_roundtrip.py"
    docker("cp", str(REPO / "molecule/resources/verify_roundtrip.py"), f"{gcp.vm}:{script}")
    environ = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": gcp.admin_password()}
    for step in ("write", "check"):
        proc = gcp.on_vm(
            "/opt/mlflow/current/bin/python", script, step, "http://127.0.0.1:5000", state, environ=environ
        )
        assert proc.returncode == 0, f"{step}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"


def test_inventory_lists_the_labelled_running_vms(gcp):
    listing = gcp.on_controller("ansible-inventory", "-i", "inventory/gcp.yml", "--list")
    assert listing.returncode == 0, listing.stdout[-3000:] + listing.stderr[-3000:]
    inventory = plain(json.loads(listing.stdout))
    assert inventory["mlflow_servers"]["hosts"] == ["mlflow-1"]
    hostvars = inventory["_meta"]["hostvars"]
    assert set(hostvars) == {"mlflow-1"}, "the stopped and the unlabelled VMs must not be listed"
    assert hostvars["mlflow-1"]["ansible_host"] == gcp.vm_ip
    assert hostvars["mlflow-1"]["labels"] == {"mlflow": "tracking", "env": "prod"}
    # What the README's IAP ProxyCommand reads: the VM's name, its zone's short name and its project.
    assert (hostvars["mlflow-1"]["name"], hostvars["mlflow-1"]["zone"]) == ("mlflow-1", "europe-west1-b")
    assert hostvars["mlflow-1"]["project"] == PROJECT
    for group in ("label_mlflow_tracking", "label_env_prod", "zone_europe_west1_b"):
        assert inventory[group]["hosts"] == ["mlflow-1"], group
    # The same through --graph --vars, as a user reads it.
    graph = gcp.on_controller("ansible-inventory", "-i", "inventory/gcp.yml", "--graph", "--vars")
    assert graph.returncode == 0, graph.stderr[-3000:]
    assert "@mlflow_servers:" in graph.stdout and f"{{ansible_host = {gcp.vm_ip}}}" in graph.stdout
    assert "mlflow-old" not in graph.stdout and "build-agent" not in graph.stdout
    # Google's client code asked the Compute API with the controller's key, filtered as inventory/gcp.yml says.
    listed = [r for r in gcp.requests() if "/aggregated/instances" in r["path"]]
    assert listed and all(r["principal"] == gcp.controller_key.email for r in listed), listed
    filters = [parse_qs(r["query"]).get("filter", [""])[0] for r in listed]
    assert all("(labels.mlflow = tracking)" in f and "(status = RUNNING)" in f for f in filters), filters


def test_a_world_open_firewall_is_refused_before_any_call(gcp):
    gcp.reset()
    proc = gcp.deploy(firewall_https_cidrs=["0.0.0.0/0"])
    assert proc.returncode != 0
    assert "firewall_https_cidrs admits 0.0.0.0/0" in proc.stdout, proc.stdout[-3000:]
    assert not [r for r in gcp.requests() if "/firewalls" in r["path"]]
    assert gcp.on_vm("test", "-e", "/opt/mlflow").returncode != 0, "nothing may change on the VM"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"service_account": None}, "has no service account attached"),
        ({"scopes": ["https://www.googleapis.com/auth/compute.readonly"]}, "none of which lets the server write"),
    ],
    ids=["no-service-account", "no-storage-scope"],
)
def test_keyless_without_usable_service_account_fails_at_deploy(gcp, settings, message):
    gcp.reset(**settings)
    proc = gcp.deploy()
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-4000:]
    assert "gcs_credentials" in proc.stdout
    assert gcp.on_vm("test", "-e", "/opt/mlflow").returncode != 0, "nothing may change on the VM"
    assert not [r for r in gcp.requests() if "/firewalls" in r["path"] and r["method"] != "GET"]


def test_keyless_deploy_over_the_inventory(gcp):
    gcp.reset()
    proc = gcp.deploy()
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    # The VPC rule: created once, with the ranges and ports asked for, on the network and tags.
    rules = gcp.firewalls()
    rule = rules[PROJECT]["mlflow-https"]
    assert rule["sourceRanges"] == [gcp.internal_subnet]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["443", "80"]}], rule
    assert rule["targetTags"] == ["mlflow"] and rule["direction"] == "INGRESS"
    assert rule["network"].endswith(f"projects/{PROJECT}/global/networks/default")

    # The server's artifacts go to the storage stand-in with the VM's own account, from the metadata server.
    start = len(gcp.requests())
    roundtrip(gcp, "/root/keyless.json")
    seen = storage_requests(gcp, start)
    assert any(r["method"] in ("POST", "PUT") for r in seen), seen
    assert {r["principal"] for r in seen} == {VM_ACCOUNT}, seen
    assert all(r["status"] < 400 for r in seen), [r for r in seen if r["status"] >= 400]
    tokens = [r for r in gcp.requests()[start:] if r["path"].endswith("/service-accounts/default/token")]
    assert tokens, "the server did not ask the metadata stand-in for a token"


def test_rerun_changes_nothing(gcp):
    before = len(gcp.requests())
    proc = gcp.deploy()
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert recap(proc.stdout)["mlflow-1"]["changed"] == 0, proc.stdout[-6000:]
    writes = [r for r in gcp.requests()[before:] if "/firewalls" in r["path"] and r["method"] != "GET"]
    assert not writes, writes


def test_range_change_updates_the_rule_and_key_file_mode(gcp):
    ranges = [gcp.internal_subnet, "192.0.2.0/24"]
    before = len(gcp.requests())
    proc = gcp.deploy(
        firewall_https_cidrs=ranges,
        gcs_credentials_mode="key_file",
        gcs_credentials_key_file=str(gcp.vm_key.path),
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert recap(proc.stdout)["mlflow-1"]["changed"] > 0
    writes = [r for r in gcp.requests()[before:] if "/firewalls" in r["path"] and r["method"] != "GET"]
    assert [r["method"] for r in writes] in (["PATCH"], ["PUT"]), writes
    assert gcp.firewalls()[PROJECT]["mlflow-https"]["sourceRanges"] == ranges
    # The key never shows in the output; on the VM it is root's, readable by the service's group only.
    assert gcp.vm_key.public["private_key_id"] not in proc.stdout
    mode = gcp.on_vm("stat", "-c", "%a %U", "/etc/mlflow/gcs-service-account.json")
    assert mode.stdout.split()[:2] == ["640", "root"], mode.stdout + mode.stderr

    start = len(gcp.requests())
    roundtrip(gcp, "/root/key-file.json")
    seen = storage_requests(gcp, start)
    assert seen and {r["principal"] for r in seen} == {gcp.vm_key.email}, seen
    grants = [r for r in gcp.requests()[start:] if r["host"] == "oauth2.googleapis.com"]
    assert grants and all(r["status"] == 200 for r in grants), grants
