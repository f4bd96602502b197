#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Settle the single sign-on plugin's database: its schema, its groups and their experiment permissions."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_oidc_grants
short_description: Settle the mlflow-oidc-auth plugin's database, groups and group permissions
version_added: "0.2.0"
description:
  - For MLflow servers that log users in through an OpenID Connect provider with the mlflow-oidc-auth plugin.
  - Brings the plugin's database to the installed plugin's schema before the server starts (the plugin would
    otherwise migrate it from every worker at once), creates the groups that may log in, and grants, changes
    and revokes the groups' experiment permissions. Grants not listed are left alone.
  - With O(basic_auth_database), users of MLflow's basic-auth database beside the backend that the plugin does
    not know yet are created in the plugin's database with their experiment permissions, so a server switched
    from basic auth keeps them for the users who log in under the same name (the provider's e-mail or
    preferred_username). Users the plugin knows keep their own grants; the basic-auth database is only read.
  - Works through the plugin's own store (C(mlflow_oidc_auth.sqlalchemy_store.SqlAlchemyStore)), so the server
    need not run. Experiments are named by name, their ids read from the backend store; missing ones are created
    through MLflow's tracking store with O(artifact_root).
  - The database URIs are read from the server's root-only environment file, never from the task's arguments.
  - Runs with the Python of MLflow's virtual environment.
options:
  env_file:
    description: The server's environment file; C(OIDC_USERS_DB_URI) and O(uri_variable) are read from it.
    type: path
    required: true
  uri_variable:
    description: The variable of O(env_file) that holds the backend store URI.
    type: str
    default: MLFLOW_BACKEND_STORE_URI
  artifact_root:
    description: The server's default artifact root, given to experiments this module creates.
    type: str
  groups:
    description: Groups to create when missing (those whose members may log in, and the admin groups).
    type: list
    elements: str
    default: []
  grants:
    description: Experiment permissions of groups.
    type: list
    elements: dict
    default: []
    suboptions:
      group:
        description: The group's name, as the provider's groups claim says it.
        type: str
        required: true
      experiment:
        description: The experiment's name (created when missing and O(grants[].state=present)).
        type: str
        required: true
      permission:
        description: The permission. Required when O(grants[].state=present).
        type: str
        choices: [READ, EDIT, MANAGE, NO_PERMISSIONS]
      state:
        description: V(absent) revokes the group's permission on the experiment.
        type: str
        choices: [present, absent]
        default: present
  basic_auth_database:
    description:
      - The basic-auth app's database on the backend's server (or its SQLite file's name in O(sqlite_dir)) whose
        users' experiment permissions are carried over; omitted, nothing is.
    type: str
  sqlite_dir:
    description: Where the SQLite databases beside a SQLite backend are.
    type: path
  service_account:
    description:
      - An admin service account of the plugin for the deployment's own calls (the canary), created when missing.
        It signs in with basic auth and an access token the plugin issued (never through the provider).
      - Its token is written to O(token_file) (0600) and renewed when that file is missing, the token no longer
        authenticates, or it ends within 30 days (the plugin issues tokens for a year at most).
    type: str
  token_file:
    description: Where the service account's token is kept on the host. Required with O(service_account).
    type: path
attributes:
  check_mode:
    support: full
    description: Reads the databases only and reports what a run would change.
  diff_mode:
    support: full
    description: Shows each group's permissions on the listed experiments before and after.
requirements:
  - MLflow and mlflow-oidc-auth (the server's virtual environment)
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Settle the SSO plugin's database
  mlflow_ansible.tracking.mlflow_oidc_grants:
    env_file: /etc/mlflow/mlflow.env
    artifact_root: mlflow-artifacts:/
    groups: [mlflow, mlflow-admin]
    grants:
      - {group: data-science, experiment: churn, permission: EDIT}
      - {group: analysts, experiment: churn, permission: READ}
    basic_auth_database: mlflow_auth
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python
"""

RETURN = r"""
changes:
  description: What changed (or would change, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["created group analysts", "READ on churn for group analysts", "new token of mlflow-ansible in /etc/m/t"]
revision:
  description: The plugin database's schema revision before the run (null when it had none).
  returned: always
  type: str
carried:
  description: Basic-auth users created in the plugin's database with their experiment permissions.
  returned: always
  type: list
  elements: str
groups:
  description: Each listed group's permission on each listed experiment after the run (C(-) for none).
  returned: always
  type: dict
  sample: {"analysts": {"churn": "READ"}}
"""

import importlib.util  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_oidc import (  # noqa: E402
    basic_auth_grants,
    open_plugin_store,
    plugin_revisions,
    settle,
    settle_service_account,
    sibling_uri,
    uri_from_env,
)
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_schema import (  # noqa: E402
    error_without_secrets,
    read_env_file,
)
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_users import Experiments  # noqa: E402

HAS_PLUGIN = importlib.util.find_spec("mlflow_oidc_auth") is not None


def _diff(before: dict, after: dict) -> dict:
    def lines(groups: dict) -> str:
        return "".join(
            f"{group} {exp}: {perm}\n" for group in sorted(groups) for exp, perm in sorted(groups[group].items())
        )

    return {"before": lines(before), "after": lines(after)}


def run(module) -> dict:
    params = module.params
    for grant in params["grants"]:
        if grant["state"] == "present" and not grant.get("permission"):
            module.fail_json(msg=f"group {grant['group']}: the grant on {grant['experiment']} needs a permission")
    env_file = params["env_file"]
    if not os.path.exists(env_file):
        if module.check_mode:
            return {"changed": True, "changes": [f"{env_file} is not written yet: the database would be settled"],
                    "revision": None, "carried": [], "groups": {}}
        module.fail_json(msg=f"{env_file} does not exist: write the server's environment file first")
    env = read_env_file(env_file)
    # The plugin reads its settings from the environment when first imported: the server's, so it opens and
    # migrates its database as the server would (and warns of no missing key).
    os.environ.update({k: v for k, v in env.items() if k.startswith("OIDC_") or k == "SECRET_KEY"})
    secrets: list[str] = []
    try:
        uri = uri_from_env(env, "OIDC_USERS_DB_URI", env_file)
        backend = uri_from_env(env, params["uri_variable"], env_file)
        secrets += [uri, backend]
        revision, head = plugin_revisions(uri)
        changes = [] if revision == head else [f"schema {revision or '(none)'} -> {head}"]
        store = None if module.check_mode and revision != head else open_plugin_store(uri)
        carried = {}
        if params["basic_auth_database"]:
            basic = sibling_uri(backend, params["basic_auth_database"], params["sqlite_dir"] or "")
            secrets.append(basic)
            carried = basic_auth_grants(basic)
        experiments = Experiments(backend, params["artifact_root"])
        try:
            result = settle(store, params["groups"], params["grants"], experiments, carried, module.check_mode)
            if params["service_account"]:
                result["changes"] += settle_service_account(store, params["service_account"], params["token_file"],
                                                            module.check_mode)
        finally:
            experiments.close()
            if store is not None:
                store.engine.dispose()
    except Exception as exc:  # any database error, without the URIs (they may hold a password)
        module.fail_json(msg=error_without_secrets(exc, secrets))
    changes += result["changes"]
    output = {"changed": bool(changes), "changes": changes, "revision": revision, "carried": result["carried"],
              "groups": result["after"]}
    if module._diff:
        output["diff"] = _diff(result["before"], result["after"])
    return output


def main():
    module = AnsibleModule(
        argument_spec={
            "env_file": {"type": "path", "required": True},
            "uri_variable": {"type": "str", "default": "MLFLOW_BACKEND_STORE_URI"},
            "artifact_root": {"type": "str"},
            "groups": {"type": "list", "elements": "str", "default": []},
            "grants": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "group": {"type": "str", "required": True},
                    "experiment": {"type": "str", "required": True},
                    "permission": {"type": "str", "choices": ["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]},
                    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
                },
            },
            "basic_auth_database": {"type": "str"},
            "sqlite_dir": {"type": "path"},
            "service_account": {"type": "str"},
            "token_file": {"type": "path"},
        },
        required_by={"service_account": "token_file"},
        supports_check_mode=True,
    )
    if not HAS_PLUGIN:
        module.fail_json(msg=missing_required_lib("mlflow-oidc-auth"))
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
