#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Manage MLflow basic-auth users and their experiment permissions in the auth database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_users
short_description: Manage MLflow basic-auth users and their experiment permissions
version_added: "0.1.0"
description:
  - Creates missing users, changes passwords that no longer match, sets the admin flag, grants,
    changes and revokes experiment permissions, and deletes users whose O(users[].state) is V(absent).
    Users not listed are left alone.
  - Works on the auth database directly, through MLflow's own auth store
    (C(mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore)), so the server need not run; the database
    must be at the installed MLflow's revision (the M(mlflow_ansible.tracking.mlflow_schema) module's
    job), the module never migrates it.
  - MLflow caches verified users per server worker and drops a changed user from the cache of the
    worker that made the change only; RV(revoked) names the users whose old password or admin flag a
    running server may still trust, so the caller restarts the server (the tracking_server role does).
  - Experiments are named by name. Their ids are read from the backend store (O(env_file)); missing ones
    are created through MLflow's tracking store with O(artifact_root), as the server would create them.
  - The database URIs are read from the root-only files the server reads, so they never appear in the
    task's arguments, its result or a process list.
  - Passwords are compared with the stored PBKDF2 hashes and never returned, shown in a diff or logged.
  - Runs with the Python of MLflow's virtual environment.
options:
  auth_config:
    description: The auth app's C(basic_auth.ini); its C(database_uri) names the auth database.
    type: path
    required: true
  env_file:
    description:
      - The server's environment file, where O(uri_variable) holds the backend store URI.
      - Needed only when a user has O(users[].permissions).
    type: path
  uri_variable:
    description: The variable of O(env_file) that holds the backend store URI.
    type: str
    default: MLFLOW_BACKEND_STORE_URI
  artifact_root:
    description:
      - The server's default artifact root, given to experiments this module creates
        (C(mlflow-artifacts:/) when the server proxies artifacts).
    type: str
  users:
    description: The users to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The user name.
        type: str
        required: true
      password:
        description:
          - The password (MLflow requires at least 12 characters). Required when O(users[].state=present).
          - Changed only when it no longer matches the stored hash.
        type: str
      admin:
        description: Whether the user is an MLflow admin.
        type: bool
        default: false
      state:
        description: V(absent) deletes the user and its permissions.
        type: str
        choices: [present, absent]
        default: present
      permissions:
        description: Permissions on experiments; permissions not listed are left alone.
        type: list
        elements: dict
        default: []
        suboptions:
          experiment:
            description: The experiment's name (created when missing and O(users[].permissions[].state=present)).
            type: str
            required: true
          permission:
            description: The permission. Required when O(users[].permissions[].state=present).
            type: str
            choices: [READ, EDIT, MANAGE, NO_PERMISSIONS]
          state:
            description:
              - V(absent) revokes the user's permission on the experiment (the default permission applies again).
            type: str
            choices: [present, absent]
            default: present
attributes:
  check_mode:
    support: full
    description:
      - Reads the auth and backend databases only and reports what a run would change, experiments it would
        create included; an auth database that does not exist yet or is not at the installed revision is
        reported as every user to create.
  diff_mode:
    support: full
    description: Shows each user's admin flag and permissions before and after; never a password.
requirements:
  - MLflow (its virtual environment)
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Manage the MLflow users
  mlflow_ansible.tracking.mlflow_users:
    auth_config: /etc/mlflow/basic_auth.ini
    env_file: /etc/mlflow/mlflow.env
    artifact_root: mlflow-artifacts:/
    users:
      - name: alice
        password: "{{ alice_password }}"
        permissions:
          - {experiment: churn, permission: EDIT}
          - {experiment: pricing, state: absent}
      - name: bob
        state: absent
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python
  register: users
  notify: restart mlflow
"""

RETURN = r"""
changes:
  description: What changed (or would change, in check mode), one line each; never a password.
  returned: always
  type: list
  elements: str
  sample: ["created alice", "created experiment churn", "EDIT on churn for alice", "password of carol", "deleted bob"]
revoked:
  description:
    - Users deleted or whose password or admin flag changed. A running server's workers may still trust
      their old credentials from the auth cache until restarted.
  returned: always
  type: list
  elements: str
  sample: ["bob", "carol"]
database:
  description:
    - The auth database, without credentials (C(dialect://host:port/name), C(sqlite:///path)); servers
      reporting the same one share their users.
  returned: when O(auth_config) exists
  type: str
  sample: postgresql://10.0.0.5:5432/mlflow_auth
users:
  description:
    - Each managed user present after the run, with its admin flag and its permissions on the listed experiments.
  returned: always
  type: dict
  sample: {"alice": {"admin": false, "permissions": {"churn": "EDIT"}}}
"""

import importlib.util  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_schema import (  # noqa: E402
    error_without_secrets,
    read_env_file,
)
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_users import (  # noqa: E402
    Experiments,
    auth_database_uri,
    auth_revisions,
    database_identity,
    open_auth_store,
    settle,
    sqlite_file_missing,
)

# MLflow itself is imported only when the auth database is read (its auth store takes seconds to import).
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def _diff(before: dict, after: dict) -> dict:
    def lines(users: dict) -> str:
        out = []
        for name in sorted(users):
            out.append(f"{name}: admin={str(users[name]['admin']).lower()}")
            out.extend(f"  {exp}: {perm}" for exp, perm in sorted(users[name]["permissions"].items()))
        return "\n".join(out) + "\n" if out else ""

    return {"before": lines(before), "after": lines(after)}


def _validate(module) -> None:
    for user in module.params["users"]:
        if user["state"] == "present" and not user.get("password"):
            module.fail_json(msg=f"user {user['name']}: a password is required when state is present")
        for grant in user["permissions"]:
            if grant["state"] == "present" and not grant.get("permission"):
                module.fail_json(msg=f"user {user['name']}: the grant on {grant['experiment']} needs a permission")


def _backend_uri(module) -> str | None:
    params = module.params
    if not any(user["permissions"] for user in params["users"] if user["state"] == "present"):
        return None
    if not params["env_file"]:
        return None  # Experiments refuses the first lookup with a clear message
    if not os.path.exists(params["env_file"]):
        if module.check_mode:
            return None
        module.fail_json(msg=f"{params['env_file']} does not exist: write the server's environment file first")
    uri = read_env_file(params["env_file"]).get(params["uri_variable"])
    if not uri:
        module.fail_json(msg=f"{params['uri_variable']} is not set in {params['env_file']}")
    return uri


def run(module) -> dict:
    params = module.params
    _validate(module)
    auth_config = params["auth_config"]
    if not os.path.exists(auth_config):
        if module.check_mode:  # a host the deploy has not configured yet
            return {"changed": True, "changes": [f"{auth_config} is not written yet: every user would be settled"],
                    "revoked": [], "users": {}}
        module.fail_json(msg=f"auth_config {auth_config} does not exist")
    secrets: list[str] = []
    try:
        uri = auth_database_uri(auth_config)
        secrets.append(uri)
        database = database_identity(uri)
        backend = _backend_uri(module)
        if backend:
            secrets.append(backend)
        store = None
        if sqlite_file_missing(uri):
            revision, head = None, "(the installed head)"
        else:
            revision, head = auth_revisions(uri)
        if revision != head:
            if not module.check_mode:
                module.fail_json(
                    msg=f"the auth database is at revision {revision or '(none)'}, MLflow needs {head}: "
                    "create and migrate it first (the mlflow_schema module)"
                )
        else:
            store = open_auth_store(uri)
        # In check mode on a host whose environment file is not written yet, every experiment is still to create.
        unknown_ok = module.check_mode and bool(params["env_file"]) and not os.path.exists(params["env_file"])
        experiments = Experiments(backend, params["artifact_root"], unknown_ok=unknown_ok)
        try:
            result = settle(store, params["users"], experiments, module.check_mode)
        finally:
            experiments.close()
            if store is not None:
                store.engine.dispose()
    except Exception as exc:  # any database error, without the URIs (they may hold a password)
        module.fail_json(msg=error_without_secrets(exc, secrets))
    output = {
        "changed": bool(result["changes"]),
        "changes": result["changes"],
        "revoked": result["revoked"],
        "users": result["after"],
        "database": database,
    }
    if module._diff:
        output["diff"] = _diff(result["before"], result["after"])
    return output


def main():
    module = AnsibleModule(
        argument_spec={
            "auth_config": {"type": "path", "required": True},
            "env_file": {"type": "path"},
            "uri_variable": {"type": "str", "default": "MLFLOW_BACKEND_STORE_URI"},
            "artifact_root": {"type": "str"},
            "users": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "password": {"type": "str", "no_log": True},
                    "admin": {"type": "bool", "default": False},
                    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
                    "permissions": {
                        "type": "list",
                        "elements": "dict",
                        "default": [],
                        "options": {
                            "experiment": {"type": "str", "required": True},
                            "permission": {"type": "str", "choices": ["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]},
                            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
                        },
                    },
                },
            },
        },
        supports_check_mode=True,
    )
    if not HAS_MLFLOW:
        module.fail_json(msg=missing_required_lib("mlflow"))
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
