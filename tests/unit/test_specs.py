"""The schema comes from the roles' argument specs; the pieces that must agree with the collection do."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from mlflow_ansible import child_env, env_vars
from mlflow_ansible.api import ACTIONS
from mlflow_ansible.collection import _installed, find_collection
from mlflow_ansible.specs import load_role_specs

REPO = Path(__file__).resolve().parents[2]


def _plugin_module():
    path = REPO / "plugins" / "vars" / "env_secrets.py"
    spec = importlib.util.spec_from_file_location("env_secrets_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploy_schema_is_every_role_but_the_testbed(role_specs, schema, bed_schema):
    deploy_roles = {spec.role for spec in schema.variables.values()}
    assert deploy_roles == {"python", "mlflow", "local_postgresql", "cloudsql_proxy", "cloudsql_client",
                            "gcs_credentials", "iap", "tracking_server", "tls_proxy", "firewall", "mlflow_ansible"}
    assert "testbed_name" not in schema and "testbed_name" in bed_schema
    assert "mlflow_ansible_hosts" in schema
    # The site variables come from roles/mlflow_ansible/meta/argument_specs.yml, the spec site.yml's first play checks.
    site = {"mlflow_ansible_action", "mlflow_ansible_hosts", "mlflow_ansible_purge", "mlflow_ansible_upgrade_to",
            "mlflow_ansible_serial", "mlflow_ansible_restore_from", "mlflow_ansible_restore_force"}
    from_spec = {name for name in schema.names if schema[name].role == "mlflow_ansible"}
    assert from_spec == site == set(role_specs["mlflow_ansible"])
    assert (schema["mlflow_ansible_serial"].type, schema["mlflow_ansible_purge"].type) == ("int", "bool")
    role_variables = sum(len(options) for role, options in role_specs.items() if role != "testbed")
    assert role_variables == len(schema.names)


def test_the_site_spec_offers_every_action_and_only_those(schema):
    """The subcommands (ACTIONS) and the choices the play accepts are the same list, each with its playbook."""
    assert schema["mlflow_ansible_action"].choices == tuple(ACTIONS)
    assert all((REPO / "playbooks" / f"{action}.yml").is_file() for action in schema["mlflow_ansible_action"].choices)


def test_the_site_playbook_checks_the_site_spec_in_its_first_play():
    import yaml

    first = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())[0]
    assert first["gather_facts"] is False and first["any_errors_fatal"] is True
    assert first["tasks"][0]["ansible.builtin.import_role"]["name"] == "mlflow_ansible.tracking.mlflow_ansible"
    assert not (REPO / "roles" / "mlflow_ansible" / "tasks").exists()  # the role's argument spec is all it brings


def test_specs_carry_type_default_choices_required_and_no_log(schema):
    port = schema["tracking_server_port"]
    assert (port.role, port.type, port.default, port.required, port.no_log) == (
        "tracking_server",
        "int",
        5000,
        False,
        False,
    )
    assert schema["cloudsql_client_password"].no_log
    assert schema.is_secret("tracking_server_backend_store_uri")
    assert schema["cloudsql_client_sslmode"].choices[0] == "disable"
    assert schema["mlflow_extra_packages"].elements == "str"
    # Each topology needs a different set of variables: the roles' preflight checks them, none is always required.
    assert schema.required == []


def test_a_required_spec_is_read_as_required(tmp_path):
    (tmp_path / "demo" / "meta").mkdir(parents=True)
    (tmp_path / "demo" / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      demo_name:\n        type: str\n        required: true\n"
        "        description: x\n"
    )
    spec = load_role_specs(tmp_path)["demo"]["demo_name"]
    assert spec.required and spec.type == "str"


def test_a_broken_spec_is_reported(tmp_path):
    (tmp_path / "broken" / "meta").mkdir(parents=True)
    (tmp_path / "broken" / "meta" / "argument_specs.yml").write_text("argument_specs: [not, a, mapping")
    with pytest.raises(Exception, match="cannot read the argument spec"):
        load_role_specs(tmp_path)


def test_the_vars_plugin_and_the_wrapper_agree_on_the_prefixes():
    plugin = _plugin_module()
    assert (plugin.PREFIX, plugin.JSON_PREFIX) == (env_vars.PREFIX, env_vars.JSON_PREFIX)
    found = plugin.env_variables(
        {
            "MLFLOW_ANSIBLE_VAR_cloudsql_client_password": "{{ not templated }}",
            "MLFLOW_ANSIBLE_JSON_VAR_tracking_server_port": "5001",
            "MLFLOW_ANSIBLE_VAR_": "ignored",
            "OTHER": "ignored",
        }
    )
    assert found == {"cloudsql_client_password": "{{ not templated }}", "tracking_server_port": 5001}
    assert env_vars.read_env_vars({"MLFLOW_ANSIBLE_JSON_VAR_x": "[1]", "MLFLOW_ANSIBLE_VAR_y": "s"})[0] == {
        "x": [1],
        "y": "s",
    }


def test_the_vars_plugin_serves_hosts_only(monkeypatch):
    from ansible.inventory.group import Group
    from ansible.inventory.host import Host

    plugin = _plugin_module()
    monkeypatch.setenv("MLFLOW_ANSIBLE_VAR_cloudsql_client_password", "pw")
    module = plugin.VarsModule()
    assert module.get_vars(None, "/tmp", [Host("vm1")]) == {"cloudsql_client_password": "pw"}
    assert module.get_vars(None, "/tmp", [Group("mlflow_servers")]) == {}


def test_child_environment_is_an_allow_list():
    assert child_env.is_allowed("PATH") and child_env.is_allowed("LC_ALL") and child_env.is_allowed("ANSIBLE_CONFIG")
    assert child_env.is_allowed("GOOGLE_APPLICATION_CREDENTIALS") and child_env.is_allowed("SSL_CERT_FILE")
    assert not child_env.is_allowed("AWS_SECRET_ACCESS_KEY") and not child_env.is_allowed("GITHUB_TOKEN")
    restricted = child_env.restrict(
        {
            "PATH": "/bin",
            "GITHUB_TOKEN": "t",
            "AWX_ISOLATED_DATA_DIR": "/pdd",
            "ANSIBLE_STDOUT_CALLBACK": "awx_display",
        },
        seeded_from={"PATH": "/bin", "GITHUB_TOKEN": "t", "ANSIBLE_STDOUT_CALLBACK": "yaml"},
        caller={"PATH": "/bin", "GITHUB_TOKEN": "t", "LANG": "C.UTF-8"},
    )
    assert restricted == {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "AWX_ISOLATED_DATA_DIR": "/pdd",
        "ANSIBLE_STDOUT_CALLBACK": "awx_display",
    }


def test_wrapper_settings_put_this_collection_and_the_vars_plugin_first():
    collection = find_collection()
    settings = child_env.wrapper_settings(
        {"PATH": "/usr/bin", "ANSIBLE_VARS_ENABLED": "host_group_vars,my.own.plugin"}, collection
    )
    assert settings["ANSIBLE_COLLECTIONS_PATH"].split(":")[0] == str(collection.collections_path)
    assert settings["ANSIBLE_VARS_ENABLED"] == "host_group_vars,my.own.plugin,mlflow_ansible.tracking.env_secrets"
    assert settings["PATH"].split(":")[:2] == [str(Path(sys.executable).parent), "/usr/bin"]


def test_the_checkout_collection_is_preferred():
    collection = find_collection()
    assert collection.from_checkout and collection.root == REPO
    assert collection.collections_path == REPO / "collections"
    assert collection.playbook("site").is_file()
    assert (
        collection.collections_path / "ansible_collections" / "mlflow_ansible" / "tracking" / "galaxy.yml"
    ).is_file()


def test_an_installed_collection_is_found_on_sys_path(tmp_path):
    site = tmp_path / "site-packages"
    (site / "ansible_collections" / "mlflow_ansible" / "tracking").mkdir(parents=True)
    (site / "ansible_collections" / "mlflow_ansible" / "tracking" / "galaxy.yml").write_text("name: tracking\n")
    found = _installed([str(tmp_path / "elsewhere"), str(site)])
    assert found is not None and not found.from_checkout
    assert found.collections_path == site and found.root == site / "ansible_collections" / "mlflow_ansible" / "tracking"
    assert _installed([str(tmp_path)]) is None
