"""Run the real site playbook against the controller, for preflight checks only."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from preflight_cases import CORE_CASES, FIREWALL_CASES, GOOD, KEY_CASES, OIDC_ON, PROXY_CASES

REPO = Path(__file__).resolve().parents[2]

# A valid set of inputs; each test breaks one of them. The database host is loopback: the preflight
# really connects to it (run_site points cloudsql_client_port at a listener of its own).
GOOD_VARS = {
    "cloudsql_client_host": "127.0.0.1",
    "cloudsql_client_password": "preflight-test-password",
    "tracking_server_artifacts_destination": "gs://mlflow-test-bucket/artifacts",
    # These hosts are not Compute Engine VMs: no metadata server to read the service account from (the
    # keyless check runs against the metadata stand-in in tests/integration/test_gcp.py).
    "gcs_credentials_check": False,
}


@dataclass
class PlayResult:
    rc: int
    output: str

    @property
    def deploy_started(self) -> bool:
        return "PLAY [Deploy the MLflow tracking server]" in self.output


def _controller_os() -> dict[str, list[str]]:
    release = platform.freedesktop_os_release()
    name = release.get("NAME", "").split()[0]
    return {name: [release.get("VERSION_ID", "").split(".")[0]]}


@pytest.fixture(scope="session")
def loopback_database_port() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts and closes each connection: the stand-in for the database
    server the preflight's connection check (wait_for) reaches, so no test connects past loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:  # the timeout: look at stop again
                continue
            connection.close()

    thread = threading.Thread(target=serve, name="loopback-database", daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _write_inventory(path: Path, hosts: dict[str, dict], common: dict) -> None:
    """Every host is this controller (local connection); common holds the group's variables."""
    path.write_text(json.dumps({
        "all": {"vars": common, "children": {"mlflow_servers": {"hosts": {
            name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **own}
            for name, own in hosts.items()
        }}}},
    }))


@pytest.fixture(scope="session")
def run_site(tmp_path_factory, loopback_database_port):
    """Run site.yml (or another playbook) in check mode against localhost with the given variables.

    The good inputs are the inventory group's variables, each test's overrides the host's own (so that
    one run can hold many hosts, each with inputs of its own: ``run_site_hosts``)."""
    work = tmp_path_factory.mktemp("preflight")
    counter = iter(range(1000))

    def run(overrides: dict | None = None, drop: tuple[str, ...] = (), supported_os: dict | None = None,
            playbook: Path | None = None, hosts: dict[str, dict] | None = None, common: dict | None = None,
            callback: str | None = None) -> PlayResult:
        """``hosts``: the inventory's hosts and their own variables, every one this controller (checks across hosts)."""
        number = next(counter)
        inventory = work / f"inventory-{number}.yml"
        variables = {k: v for k, v in GOOD_VARS.items() if k not in drop}
        variables["cloudsql_client_port"] = loopback_database_port
        variables.update(common or {})
        _write_inventory(inventory, {name: {**own, **(overrides or {})}
                                     for name, own in (hosts or {"controller": {}}).items()}, variables)
        # A role variable (vars/main.yml ranks above the inventory): only extra vars override it.
        extra = work / f"vars-{number}.json"
        extra.write_text(json.dumps({"_python_supported_distributions": supported_os or _controller_os()}))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        if callback:
            env["ANSIBLE_STDOUT_CALLBACK"] = callback
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-e", f"@{extra}",
             "--check", "--tags", "preflight", str(playbook or REPO / "site.yml")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        return PlayResult(proc.returncode, proc.stdout + proc.stderr)

    return run


# The plays of site.yml before the deploy: the site variables' check (playbooks/site.yml), the inputs' (deploy.yml).
NOT_DEPLOY_PLAYS = ("Check the site variables", "Preflight")


@dataclass
class HostOutcome:
    """One host of a batched run: its last failed task (the one that stopped it) with its message, and whether
    it got past the preflight."""
    failed_task: str | None
    message: str
    deployed: bool
    unreachable: bool = False


def host_outcomes(result: PlayResult) -> dict[str, HostOutcome]:
    """Per host, from the ansible.posix.json callback's output of a run (``--tags preflight``: the deploy play
    runs no task then, but it starts, with the hosts that no task failed: those are "deployed")."""
    report = json.loads(result.output[result.output.index("{"):])
    outcomes: dict[str, HostOutcome] = {}
    deploy_started = any(play["play"]["name"] not in NOT_DEPLOY_PLAYS for play in report["plays"])
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, outcome in task["hosts"].items():
                seen = outcomes.setdefault(host, HostOutcome(None, "", False))
                if outcome.get("unreachable"):
                    seen.unreachable = True
                    seen.failed_task, seen.message = task["task"]["name"], json.dumps([outcome.get("msg", outcome)])
                # The last failure stopped the host (one before may have been rescued).
                if outcome.get("failed"):
                    seen.failed_task = task["task"]["name"]
                    # A loop's own message only says "One or more items failed": the items' follow.
                    items = [item.get("msg", item) for item in outcome.get("results", []) if item.get("failed")]
                    seen.message = json.dumps([outcome.get("msg", outcome), *items])
    for host, seen in outcomes.items():
        stats = report["stats"].get(host, {})
        seen.deployed = deploy_started and not (stats.get("failures") or stats.get("unreachable"))
    return outcomes


@pytest.fixture(scope="session")
def run_site_hosts(run_site):
    """One check-mode run of site.yml with many hosts, each with inputs of its own: ({host: HostOutcome}, output)."""
    def run(hosts: dict[str, dict], common: dict | None = None) -> tuple[dict[str, HostOutcome], str]:
        result = run_site(hosts=hosts, common=common, callback="ansible.posix.json")
        return host_outcomes(result), result.output

    return run


def _once_per_session(tmp_path_factory, name: str, compute):
    """compute() once for the whole test session, whichever pytest-xdist worker asks first (the others wait
    for it and read its answer): each batched run is one ansible-playbook, not one per worker."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers
    answer = root / f"{name}.json"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not answer.exists():
            outcomes, output = compute(root / name)
            answer.write_text(json.dumps([{host: asdict(outcome) for host, outcome in outcomes.items()}, output]))
    outcomes, output = json.loads(answer.read_text())
    return {host: HostOutcome(**outcome) for host, outcome in outcomes.items()}, output


def _key_file(directory: Path, content) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "key.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


# Every host of a batch shares one database: only its checks across servers (periodic jobs, connections)
# would fail them all.
BATCH_COMMON = {"tracking_server_job_periodic_tasks": False, "tracking_server_db_max_connections": 100000}


@pytest.fixture(scope="session")
def bad_inputs(run_site_hosts, tmp_path_factory):
    """One run of site.yml for every bad case of preflight_cases.py: a host per case with its own bad input,
    and one host with good inputs (the control). Every host's preflight runs to its own first error."""
    def compute(work: Path):
        keys = work / "keys"
        hosts = {name: overrides for name, overrides, _ in CORE_CASES + PROXY_CASES}
        hosts.update({name: {variable: ranges} for name, variable, ranges, _ in FIREWALL_CASES})
        for name, content, _ in KEY_CASES:
            hosts[f"key-{name}"] = {"gcs_credentials_mode": "key_file",
                                    "gcs_credentials_key_file": _key_file(keys / name, content)}
        hosts["key-missing"] = {"gcs_credentials_mode": "key_file", "gcs_credentials_key_file": str(keys / "nope.json")}
        # A host that cannot be reached, with a bad input: the input is named, the host is never contacted.
        hosts["down-old-mlflow"] = {**_unreachable(), "mlflow_version": "2.9.0"}
        hosts["control"] = {}
        return run_site_hosts(hosts, common=BATCH_COMMON)

    return _once_per_session(tmp_path_factory, "bad-inputs", compute)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unreachable() -> dict:
    """The variables of a host that cannot be reached: SSH to a closed loopback port."""
    return {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": _closed_port(),
            "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes"}


@pytest.fixture(scope="session")
def host_checks(run_site_hosts, tmp_path_factory):
    """One run of site.yml whose inputs are all good, for the checks that need the host (after the inputs
    passed everywhere): a database port where nothing listens, a host that cannot be reached, an OpenID Connect
    provider that does not answer, a control."""
    def compute(work: Path):
        hosts = {
            # The connection check is real: a loopback port where nothing listens fails it.
            "closed-port": {"cloudsql_client_port": _closed_port(), "cloudsql_client_connect_timeout": 1},
            "down": _unreachable(),
            # Single sign-on whose provider does not answer: the discovery document is read from the host.
            "oidc-unreachable": OIDC_ON,
            "control": {},
        }
        return run_site_hosts(hosts, common=BATCH_COMMON)

    return _once_per_session(tmp_path_factory, "host-checks", compute)


@pytest.fixture(scope="session")
def good_inputs(run_site_hosts, tmp_path_factory):
    """One run of site.yml whose hosts all have good inputs (preflight_cases.GOOD): each must reach the
    deploy play (check mode)."""
    return _once_per_session(tmp_path_factory, "good-inputs", lambda work: run_site_hosts(GOOD, common=BATCH_COMMON))
