"""Bad input is rejected by the preflight play with a message naming the variable,
before the deploy play starts (nothing on the host changes). The cases (preflight_cases.py) run as
the hosts of two ansible-playbook runs (conftest.py: bad_inputs, good_inputs)."""

from __future__ import annotations

import json
import re

import pytest
from preflight_cases import CORE_CASES, FIREWALL_CASES, GOOD, KEY_CASES, PROXY_CASES

# The last task of the preflight play: it fails every host that passed when another one failed.
GATE = "Stop every host when the inputs of any host failed"


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\\n", " "))


@pytest.mark.parametrize(("host", "message"), [(c[0], c[2]) for c in CORE_CASES], ids=[c[0] for c in CORE_CASES])
def test_bad_input_is_rejected_before_any_change(bad_inputs, host, message):
    outcomes, _ = bad_inputs
    outcome = outcomes[host]
    assert outcome.failed_task not in (None, GATE), outcome
    assert re.search(message, _flat(outcome.message)), outcome
    assert not outcome.deployed


@pytest.mark.parametrize(("host", "message"), [(f"key-{c[0]}", c[2]) for c in KEY_CASES], ids=[c[0] for c in KEY_CASES])
def test_invalid_key_file(bad_inputs, host, message):
    outcomes, output = bad_inputs
    outcome = outcomes[host]
    assert "gcs_credentials_key_file is not usable" in outcome.message, outcome
    assert re.search(message, _flat(outcome.message)), outcome
    assert "hunter2" not in output
    assert not outcome.deployed


def test_one_bad_host_stops_every_host(bad_inputs):
    """The control host's inputs are good: the preflight play's last task stops it because the others failed,
    naming them, and nothing is deployed anywhere."""
    outcomes, _ = bad_inputs
    control = outcomes["control"]
    assert control.failed_task == GATE, control
    assert "nothing was deployed on any host" in control.message
    assert "uri-scheme" in control.message and "key-not-pem" in control.message
    assert not any(outcome.deployed for outcome in outcomes.values())
    names = [c[0] for c in CORE_CASES + PROXY_CASES + FIREWALL_CASES] + [f"key-{c[0]}" for c in KEY_CASES]
    assert len(names) == len(set(names)), "two cases share a host name"
    assert set(outcomes) == set(names) | {"key-missing", "down-old-mlflow", "control"}


def test_a_bad_input_is_named_before_the_host_is_contacted(bad_inputs):
    """The inputs are checked before any connection: a host that cannot be reached and has a bad
    mlflow_version is refused for the version, not reported unreachable."""
    outcome = bad_inputs[0]["down-old-mlflow"]
    assert not outcome.unreachable, outcome
    assert outcome.failed_task == "mlflow_ansible.tracking.mlflow : Check the inputs", outcome
    assert "mlflow_version 2.9.0 is below" in _flat(outcome.message)


def test_a_bad_site_variable_stops_every_host_before_the_preflight(run_site):
    """The site variables are checked by ansible-core against roles/mlflow_ansible/meta/argument_specs.yml in site.yml's
    first play (no connection), and the wrapper gives the same verdict from the same file before it starts."""
    from mlflow_ansible.api import prepare
    from mlflow_ansible.errors import ValidationError

    hosts = {"vm1": {"mlflow_ansible_serial": "two"}, "vm2": {}}
    result = run_site(hosts=hosts, callback="ansible.posix.json")
    report = json.loads(result.output[result.output.index("{"):])
    assert result.rc != 0
    assert [play["play"]["name"] for play in report["plays"]] == ["Check the site variables"]
    failed = {host: outcome["msg"] for task in report["plays"][0]["tasks"]
              for host, outcome in task["hosts"].items() if outcome.get("failed")}
    assert list(failed) == ["vm1"]
    assert "argument 'mlflow_ansible_serial' is of type str and we were unable to convert to int" in failed["vm1"]
    with pytest.raises(ValidationError) as excinfo:
        prepare("status", {"all": {"children": {"mlflow_servers": {"hosts": hosts}}}}, environ={})
    assert excinfo.value.problems == [
        "mlflow_ansible_serial must be an integer, not 'two' (inventory, host vm1; role mlflow_ansible)"
    ]


def test_missing_required_artifact_destination(run_site):
    result = run_site(drop=("tracking_server_artifacts_destination",))
    assert result.rc != 0
    assert "tracking_server_artifacts_destination" in result.output
    assert not result.deploy_started


def test_unsupported_os(run_site):
    result = run_site(supported_os={"Debian": ["99"]})
    assert result.rc != 0
    assert "Unsupported operating system" in result.output
    assert not result.deploy_started


@pytest.mark.parametrize("host", sorted(GOOD))
def test_good_input_passes_preflight(good_inputs, host):
    outcomes, output = good_inputs
    assert outcomes[host].failed_task is None, outcomes[host]
    assert outcomes[host].deployed, output[-3000:]


ROLES = ("python", "mlflow", "local_postgresql", "cloudsql_proxy", "cloudsql_client", "gcs_credentials", "iap",
         "tracking_server", "tls_proxy", "firewall")


def test_the_deploy_play_does_not_run_the_preflight_again(good_inputs):
    """The preflight play checked every role (arguments and preflight); the deploy play calls each role's deploy
    entry point, which neither validates the arguments again nor includes the preflight."""
    report = json.loads(good_inputs[1][good_inputs[1].index("{"):])
    site, preflight, deploy = report["plays"]  # site.yml's check of the site variables comes first
    assert site["play"]["name"] == "Check the site variables"
    preflight_names = [task["task"]["name"] for task in preflight["tasks"]]
    deploy_names = [task["task"]["name"] for task in deploy["tasks"]]
    for role in ROLES:
        validated = f"mlflow_ansible.tracking.{role} : Validating arguments"
        assert any(name.startswith(validated) for name in preflight_names), (role, preflight_names)
        repeated = [name for name in deploy_names if name.startswith(f"mlflow_ansible.tracking.{role} : ")
                    and ("Validating arguments" in name or name.endswith((": Preflight", ": Check the inputs")))]
        assert not repeated, (role, repeated)
    # A check of one role's preflight ran once, in the preflight play.
    check = "mlflow_ansible.tracking.python : Check the inputs"
    assert preflight_names.count(check) == 1
    assert check not in deploy_names


def test_a_role_used_on_its_own_runs_its_preflight(run_site, tmp_path):
    """Without the site playbook's preflight play, the role checks its own inputs."""
    playbook = tmp_path / "python-only.yml"
    playbook.write_text(json.dumps([{"name": "The python role alone", "hosts": "mlflow_servers",
                                     "gather_facts": True, "roles": ["mlflow_ansible.tracking.python"]}]))
    result = run_site({"python_service_user": "root"}, playbook=playbook)
    assert result.rc != 0
    assert "python_service_user and python_service_group must name an unprivileged" in result.output, \
        result.output[-3000:]


def test_a_missing_key_file(bad_inputs):
    outcomes, _ = bad_inputs
    assert re.search(r"gcs_credentials_key_file is not usable: .*nope.json does not exist",
                     _flat(outcomes["key-missing"].message)), outcomes["key-missing"]
    assert not outcomes["key-missing"].deployed


def test_an_unreachable_database_or_host_stops_every_host(host_checks):
    """Once every input passed, the hosts are reached: a database that does not answer from the VM, a
    host that cannot be reached and an OpenID Connect provider it cannot read fail their own checks; the
    control host is stopped by the second gate."""
    outcomes, _ = host_checks
    assert re.search(r"nothing answered on host 127.0.0.1 port \d+", _flat(outcomes["closed-port"].message)), \
        outcomes["closed-port"]
    assert outcomes["down"].unreachable and outcomes["down"].failed_task == "Gather the minimal facts", outcomes["down"]
    assert re.search(
        r"tracking_server_oidc_issuer: oidc-unreachable cannot read the provider's discovery document "
        r"https://127.0.0.1:9/realms/mlflow/.well-known/openid-configuration .*Nothing was changed",
        _flat(outcomes["oidc-unreachable"].message)), outcomes["oidc-unreachable"]
    assert outcomes["control"].failed_task == "Stop every host when any host failed its checks", outcomes["control"]
    assert "closed-port" in outcomes["control"].message and "down" in outcomes["control"].message
    assert not any(outcome.deployed for outcome in outcomes.values())


def test_one_server_per_database_runs_the_periodic_jobs(run_site):
    """MLflow's periodic jobs have no lock across servers: two servers of one database may not both run them,
    whether in the job runner or (the runner off) the trace archival timer."""
    timer = {"tracking_server_enable_job_execution": False, "cloudsql_client_database": "other",
             "tracking_server_trace_archival_location": "gs://mlflow-test-bucket/trace-archive"}
    both = run_site(hosts={"vm1": {}, "vm2": {}, "vm3": timer, "vm4": timer})
    assert both.rc != 0, both.output
    assert "vm1, vm2 share one database" in both.output
    assert "vm3, vm4 share one database" in both.output
    assert "set tracking_server_job_periodic_tasks: false" in both.output
    assert not both.deploy_started
    one = run_site(hosts={"vm1": {}, "vm2": {"tracking_server_job_periodic_tasks": False},
                          "vm3": timer, "vm4": {**timer, "tracking_server_job_periodic_tasks": False},
                          # The runner off and no archival: no periodic work at all.
                          "vm5": {"tracking_server_enable_job_execution": False}},
                   # Three servers of one database: more connections than PostgreSQL's default allows.
                   common={"tracking_server_db_max_connections": 200})
    assert one.rc == 0, one.output[-3000:]


def test_the_servers_of_one_database_must_fit_in_its_max_connections(run_site_hosts):
    """Every worker and job runner process of every server holds an engine per store, each with its pool: the
    preflight adds them up per database and refuses a total above tracking_server_db_max_connections, naming the
    variables and showing the arithmetic. Two default servers need 100 connections and fit a declared 120; three
    do not."""
    other = {"cloudsql_client_database": "other", "tracking_server_job_periodic_tasks": False}
    outcomes, _ = run_site_hosts({"vm1": {}, "vm2": {"tracking_server_job_periodic_tasks": False},
                                  "vm3": {"cloudsql_client_database": "other"}, "vm4": other, "vm5": other},
                                 common={"tracking_server_db_max_connections": 120})
    check = "mlflow_ansible.tracking.tracking_server : Check the servers sharing this database"
    for host in ("vm3", "vm4", "vm5"):
        outcome = outcomes[host]
        assert outcome.failed_task == check, outcome
        message = _flat(outcome.message)
        assert "The servers of this database (vm3, vm4, vm5) may open more connections than" in message
        assert ("vm3: 1 workers x 4 engines (tracking, model registry, jobs, auth) + at least 1 REST API (gunicorn) "
                "workers x 3 engines + 3 engines of the job runner (executor) = 10 engines x (2 + 3) = 50") in message
        assert "in all 150 connections against 117 (max_connections 120 - 3 reserved)" in message
        for variable in ("tracking_server_db_pool_size (2)", "tracking_server_db_max_overflow (3)",
                         "tracking_server_workers (0)", "tracking_server_db_max_connections (120)"):
            assert variable in message, (variable, message)
    # The two servers of the first database fit (100 of 117): the gate stops them, for the others.
    for host in ("vm1", "vm2"):
        assert outcomes[host].failed_task == GATE, outcomes[host]


def test_two_servers_fit_and_a_bigger_pool_is_refused(run_site):
    """The default pools of two servers (100 connections) fit a database of 200 but not PostgreSQL's default 100;
    SQLAlchemy's own (5 + 10) do not fit 200."""
    small = run_site(hosts={"vm1": {}, "vm2": {"tracking_server_job_periodic_tasks": False}})
    assert small.rc != 0 and not small.deploy_started
    assert "in all 100 connections against 97" in _flat(small.output), small.output[-3000:]
    two = run_site(hosts={"vm1": {}, "vm2": {"tracking_server_job_periodic_tasks": False}},
                   common={"tracking_server_db_max_connections": 200})
    assert two.rc == 0, two.output[-3000:]
    bigger = run_site(hosts={"vm1": {}, "vm2": {"tracking_server_job_periodic_tasks": False}},
                      common={"tracking_server_db_pool_size": 0, "tracking_server_db_max_overflow": 0,
                              "tracking_server_db_max_connections": 200})
    assert bigger.rc != 0 and not bigger.deploy_started
    assert "= 10 engines x (5 + 10) = 150" in _flat(bigger.output), bigger.output[-3000:]
