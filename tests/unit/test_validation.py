"""Validation before launch against the roles' argument specs: one clear line per problem."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mlflow_ansible.api import prepare
from mlflow_ansible.errors import InventoryError, ValidationError
from mlflow_ansible.exit_codes import ExitCode
from mlflow_ansible.extra_vars import parse_extra_vars
from mlflow_ansible.specs import Schema
from mlflow_ansible.validation import Validator, check_value, suggestion

REQUIRED = [
    "cloudsql_client_host=10.20.0.3",
    "tracking_server_artifacts_destination=gs://bucket/mlflow",
]
SECRET = "cloudsql_client_password=unit-test-password"


def _inventory(tmp_path: Path, host_vars: dict | None = None, group_vars: dict | None = None) -> str:
    path = tmp_path / "hosts.yml"
    group = {"hosts": {"vm1": host_vars or {}, "vm2": {}}}
    if group_vars:
        group["vars"] = group_vars
    path.write_text(json.dumps({"all": {"children": {"mlflow_servers": group}}}))
    return str(path)


def _problems(excinfo: pytest.ExceptionInfo) -> str:
    return "\n".join(excinfo.value.problems)


def _env(**values: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", **{f"MLFLOW_ANSIBLE_VAR_{name}": value for name, value in values.items()}}


# (id, extra -e arguments, MLFLOW_ANSIBLE_VAR_* values, expected message)
BAD_INPUTS = [
    (
        "unknown-extra-var",
        ["tracking_server_prot=5001"],
        {},
        r"unknown variable 'tracking_server_prot' \(-e tracking_server_prot=\.\.\.\); "
        r"did you mean 'tracking_server_port'\?",
    ),
    (
        "unknown-env-var",
        [],
        {"cloudsql_client_pasword": "x"},
        r"unknown variable 'cloudsql_client_pasword' \(MLFLOW_ANSIBLE_VAR_cloudsql_client_pasword\); "
        r"did you mean 'cloudsql_client_password'\?",
    ),
    (
        "unknown-without-suggestion",
        ["completely_unrelated=1"],
        {},
        r"unknown variable 'completely_unrelated' \(-e completely_unrelated=\.\.\.\); see the variables in README\.md",
    ),
    (
        "int",
        ["tracking_server_port=abc"],
        {},
        r"tracking_server_port must be an integer, not 'abc' \(-e tracking_server_port=\.\.\.; role tracking_server\)",
    ),
    # ansible-core's check_type_int takes True as 1 (the role's validate_argument_spec passes it at play
    # time, so the wrapper does too: one verdict); a float with a fraction is no integer for either.
    (
        "int-not-fraction",
        ['{"tracking_server_workers": 2.5}'],
        {},
        r"tracking_server_workers must be an integer, not 2\.5",
    ),
    (
        "bool-from-env",
        [],
        {"tracking_server_canary": "maybe"},
        r"tracking_server_canary must be a boolean, not 'maybe' "
        r"\(MLFLOW_ANSIBLE_VAR_tracking_server_canary; role tracking_server\)",
    ),
    (
        "choices",
        ["cloudsql_client_sslmode=always"],
        {},
        r"cloudsql_client_sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full, not 'always'",
    ),
    ("choices-installer", ["mlflow_installer=conda"], {}, r"mlflow_installer must be one of uv, pip, not 'conda'"),
    (
        "choices-multipart",
        ["tls_proxy_multipart_upload=off"],
        {},
        r"tls_proxy_multipart_upload must be one of auto, pass, refuse, not 'off'",
    ),
    # ansible-core turns anything into a str (a mapping in mlflow_extra_packages would pass as its repr, at
    # play time too): the element check is shown on a list of mappings, where a string is refused.
    (
        "list-element",
        ['{"tracking_server_auth_users": [{"name": "ci"}, "alice"]}'],
        {},
        r"tracking_server_auth_users\[1\] must be a mapping, not 'alice' \(-e \(JSON\); role tracking_server\)",
    ),
    (
        "dict",
        ['{"tracking_server_extra_env": ["A=1"]}'],
        {},
        r"tracking_server_extra_env must be a mapping, not \['A=1'\]",
    ),
    # (A list for a str option, refused here before, passes ansible-core's check_type_str as its repr, at
    # play time too; the wrapper keeps that verdict.)
    (
        "str-not-mapping",
        ['{"tracking_server_extra_env": "not-a-mapping"}'],
        {},
        r"tracking_server_extra_env must be a mapping, not 'not-a-mapping'",
    ),
    (
        "secret-hidden",
        ['{"tracking_server_kek_previous_passphrases": {"old": "hunter2-passphrase"}}'],
        {},
        r"tracking_server_kek_previous_passphrases must be a list of strings, not a dict \(value hidden\)",
    ),
    (
        "site-variable-from-its-spec",
        ["mlflow_ansible_serial=two"],
        {},
        r"mlflow_ansible_serial must be an integer, not 'two' \(-e mlflow_ansible_serial=\.\.\.; role mlflow_ansible\)",
    ),
    (
        "reserved",
        ["mlflow_ansible_action=status"],
        {},
        r"mlflow_ansible_action cannot be given \(-e mlflow_ansible_action=\.\.\.\): the subcommand sets it",
    ),
    (
        "given-twice",
        ["cloudsql_client_user=a"],
        {"cloudsql_client_user": "b"},
        r"cloudsql_client_user is given twice, with -e cloudsql_client_user=\.\.\. and "
        r"MLFLOW_ANSIBLE_VAR_cloudsql_client_user: keep one",
    ),
]


@pytest.mark.parametrize(("extra", "env", "message"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_rejected_with_one_line_naming_the_variable(tmp_path, extra, env, message):
    with pytest.raises(ValidationError) as excinfo:
        prepare("deploy", _inventory(tmp_path), extra_vars=[*REQUIRED, SECRET, *extra], environ=_env(**env))
    text = _problems(excinfo)
    assert re.search(message, text), text
    assert excinfo.value.exit_code == ExitCode.BAD_OPTIONS
    assert all("\n" not in problem and "Traceback" not in problem for problem in excinfo.value.problems)
    assert "hunter2" not in text and "unit-test-password" not in text  # no secret is ever shown


def test_bad_json_env_var(tmp_path):
    env = {"MLFLOW_ANSIBLE_JSON_VAR_tracking_server_port": "{not json"}
    with pytest.raises(ValidationError) as excinfo:
        prepare("deploy", _inventory(tmp_path), extra_vars=[*REQUIRED, SECRET], environ=env)
    assert "MLFLOW_ANSIBLE_JSON_VAR_tracking_server_port does not hold valid JSON" in _problems(excinfo)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("foo", r"-e 'foo': 'foo' is not key=value"),
        ("{bad", r"-e '\{bad' is not valid JSON or YAML"),
        ("[1, 2]", r"must be a mapping of variables, not a list"),
        ("a='unterminated", r"failed at splitting arguments"),
        ("@/nonexistent/vars.yml", r"-e @/nonexistent/vars.yml: no such file"),
        ("@", r"-e @ needs a file name"),
        ("", r"-e needs a value"),
        ("9lives=1", r"'9lives' is not a valid variable name"),
    ],
)
def test_bad_extra_vars_syntax(loader, argument, message):
    with pytest.raises(ValidationError) as excinfo:
        parse_extra_vars([argument], loader)
    assert re.search(message, _problems(excinfo)), _problems(excinfo)


def test_extra_vars_file_that_is_not_a_mapping(tmp_path, loader):
    path = tmp_path / "vars.yml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ValidationError, match="the file must hold a mapping of variables, not a list"):
        parse_extra_vars([f"@{path}"], loader)


# No role variable is unconditionally required any more (each topology needs a different
# set, which the roles' preflight checks); the wrapper's check of `required: true` specs is
# exercised by marking two real specs required.
@pytest.fixture
def two_required(monkeypatch):
    names = ("tracking_server_artifacts_destination", "cloudsql_client_password")

    def required(self):
        return [dataclasses.replace(self.variables[n], required=True) for n in names if n in self.variables]

    monkeypatch.setattr(Schema, "required", property(required))


def test_missing_required_values_name_every_host(tmp_path, two_required):
    with pytest.raises(ValidationError) as excinfo:
        prepare("deploy", _inventory(tmp_path, group_vars={"cloudsql_client_host": "db"}), environ=_env())
    text = _problems(excinfo)
    assert (
        "tracking_server_artifacts_destination is required and not set for hosts vm1, vm2: set it in the "
        "inventory or with -e tracking_server_artifacts_destination=... or "
        "MLFLOW_ANSIBLE_VAR_tracking_server_artifacts_destination"
    ) in text
    assert "cloudsql_client_password is required and not set for hosts vm1, vm2" in text
    assert "MLFLOW_ANSIBLE_VAR_cloudsql_client_password (a secret" in text
    assert "cloudsql_client_host" not in text  # set in the inventory's group vars


def test_required_values_from_the_inventory_host_vars_count(tmp_path, two_required):
    inventory = _inventory(
        tmp_path,
        group_vars={"cloudsql_client_host": "db", "tracking_server_artifacts_destination": "gs://b"},
    )
    with pytest.raises(ValidationError) as excinfo:
        prepare("deploy", inventory, environ=_env())
    assert _problems(excinfo).startswith("cloudsql_client_password is required and not set for hosts vm1, vm2")
    job = prepare("deploy", inventory, environ=_env(cloudsql_client_password="pw"))
    assert job.secret_vars == {"cloudsql_client_password": "pw"}


def test_inventory_typo_and_type_are_reported_per_host(tmp_path):
    inventory = _inventory(tmp_path, host_vars={"tracking_server_prot": 5000, "tracking_server_workers": "many"})
    with pytest.raises(ValidationError) as excinfo:
        prepare("deploy", inventory, extra_vars=[*REQUIRED, SECRET], environ=_env())
    text = _problems(excinfo)
    assert "unknown variable 'tracking_server_prot'; did you mean 'tracking_server_port'? (inventory, host vm1)" in text
    assert "tracking_server_workers must be an integer, not 'many' (inventory, host vm1; role tracking_server)" in text


def test_inventory_names_that_are_not_near_misses_are_the_users_own(tmp_path):
    inventory = _inventory(tmp_path, host_vars={"mlflow_team": "ml-platform", "vault_cloudsql_client_password": "x"})
    job = prepare("deploy", inventory, extra_vars=[*REQUIRED, SECRET], environ=_env())
    assert job.extra_vars["mlflow_ansible_action"] == "deploy"


def test_plugin_inventory_skips_the_inventory_checks(schema):
    repo = Path(__file__).resolve().parents[2]
    job = prepare("deploy", str(repo / "inventory" / "gcp.yml"), environ=_env())  # required values may be in group_vars
    assert job.inventory == [str(repo / "inventory" / "gcp.yml")]
    with pytest.raises(ValidationError, match="tracking_server_workers must be an integer"):
        prepare("deploy", str(repo / "inventory" / "gcp.yml"), extra_vars=["tracking_server_workers=x"], environ=_env())


@pytest.mark.parametrize(
    ("inventory", "message", "code"),
    [
        ("/nonexistent/hosts.yml", r"inventory /nonexistent/hosts.yml: no such file or directory", 4),
        ("vm1,vm2,", r"no host of the inventory matches 'mlflow_servers'", 4),
    ],
)
def test_inventory_errors(inventory, message, code):
    with pytest.raises(InventoryError) as excinfo:
        prepare("deploy", inventory, extra_vars=[*REQUIRED, SECRET], environ=_env())
    assert re.search(message, _problems(excinfo))
    assert excinfo.value.exit_code == code


def test_unparsable_inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[mlflow_servers\nvm1\n")
    with pytest.raises(InventoryError, match=r"inventory .*hosts.ini cannot be parsed"):
        prepare("deploy", str(path), extra_vars=[*REQUIRED, SECRET], environ=_env())


def test_unreadable_inventory(tmp_path, monkeypatch):
    path = Path(_inventory(tmp_path))
    monkeypatch.setattr("mlflow_ansible.inventory.os.access", lambda *args, **kwargs: False)  # root reads anything
    with pytest.raises(InventoryError, match="permission denied"):
        prepare("deploy", str(path), environ=_env())


def test_values_are_converted_to_the_declared_types(tmp_path):
    job = prepare(
        "deploy",
        _inventory(tmp_path),
        extra_vars=[
            *REQUIRED,
            "tracking_server_port=5001",
            "tracking_server_canary=false",
            "mlflow_extra_packages=google-cloud-storage,google-auth",
            'tracking_server_extra_env={"A":"1"}',
        ],
        environ=_env(cloudsql_client_password="pw", tracking_server_workers="4"),
    )
    assert job.extra_vars["tracking_server_port"] == 5001
    assert job.extra_vars["tracking_server_canary"] is False
    assert job.extra_vars["mlflow_extra_packages"] == ["google-cloud-storage", "google-auth"]
    assert job.extra_vars["tracking_server_extra_env"] == {"A": "1"}
    assert job.secret_vars == {"cloudsql_client_password": "pw", "tracking_server_workers": 4}


def test_no_log_extra_vars_travel_through_the_environment(tmp_path):
    job = prepare(
        "deploy",
        _inventory(tmp_path),
        extra_vars=[*REQUIRED, SECRET, "tracking_server_backend_store_uri={{ my_uri }}"],
        environ=_env(),
    )
    assert job.secret_vars == {"cloudsql_client_password": "unit-test-password"}
    assert "cloudsql_client_password" not in job.extra_vars
    # A template is a reference to be rendered by Ansible, not the secret itself.
    assert job.extra_vars["tracking_server_backend_store_uri"] == "{{ my_uri }}"


def test_later_extra_vars_win_and_files_load(tmp_path):
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("tracking_server_port: 6000\ntracking_server_workers: 2\n")
    job = prepare(
        "deploy",
        _inventory(tmp_path),
        extra_vars=[*REQUIRED, SECRET, "tracking_server_port=5001", f"@{vars_file}", "tracking_server_workers=3"],
        environ=_env(),
    )
    assert job.extra_vars["tracking_server_port"] == 6000
    assert job.extra_vars["tracking_server_workers"] == 3


def test_verify_does_not_need_the_deploy_inputs(tmp_path):
    job = prepare("verify", _inventory(tmp_path), environ=_env())
    assert job.extra_vars == {"mlflow_ansible_action": "verify"}


def test_restart_takes_serial_as_an_int_and_needs_no_deploy_inputs(tmp_path):
    job = prepare("restart", _inventory(tmp_path), extra_vars=["mlflow_ansible_serial=2"], environ=_env())
    assert job.extra_vars == {"mlflow_ansible_action": "restart", "mlflow_ansible_serial": 2}
    with pytest.raises(ValidationError, match="mlflow_ansible_serial"):
        prepare("restart", _inventory(tmp_path), extra_vars=["mlflow_ansible_serial=two"], environ=_env())


def test_every_action_has_its_playbook():
    playbooks = Path(__file__).resolve().parents[2] / "playbooks"
    from mlflow_ansible.api import ACTIONS

    assert [name for name in ACTIONS if not (playbooks / f"{name}.yml").is_file()] == []


def test_ansible_connection_variables_are_allowed(tmp_path):
    job = prepare("status", _inventory(tmp_path), extra_vars=["ansible_user=deploy"], environ=_env())
    assert job.extra_vars["ansible_user"] == "deploy"


def test_testbed_schema_knows_only_the_testbed(bed_schema):
    problems: list[str] = []
    Validator(bed_schema)._given("cloudsql_client_host", "x", "-e", problems)
    assert problems == ["unknown variable 'cloudsql_client_host' (-e); see the variables in README.md"]


def test_check_value_leaves_templates_to_ansible(schema):
    assert check_value(schema["tracking_server_port"], "{{ port }}") == ("{{ port }}", None)
    assert check_value(schema["tracking_server_auth_users"], ["{{ admin }}"]) == (["{{ admin }}"], None)


def test_suggestion_uses_difflib():
    assert suggestion("trackng_server_port", ["tracking_server_port", "mlflow_version"]) == "tracking_server_port"
    assert suggestion("zzz", ["tracking_server_port"]) is None
