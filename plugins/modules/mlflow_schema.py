#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Settle the databases of an MLflow tracking server before it starts: the auth database and both schemas."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_schema
short_description: Create and migrate the databases of an MLflow tracking server, or report them
version_added: "0.1.0"
description:
  - What a deploy does before the MLflow server (re)starts, in one Python process and one connection
    set-up per database.
  - Creates the basic-auth app's database on the backend's server when it is missing (PostgreSQL or
    MySQL; SQLite files need no creation), brings it to the installed MLflow's revision, reads the
    backend store schema's revision against the installed MLflow's head and, with O(backend=migrate), migrates
    it when it is behind.
  - Migrations hold a server-wide lock (PostgreSQL C(pg_advisory_lock), MySQL C(GET_LOCK)), so when
    several servers share one database only one migrates; the others find it current.
  - mlflow server would create or migrate a schema by itself at startup; the unit's start guard (the
    C(check) action of the same code, installed on the VM) refuses to start on a database this module
    did not bring to the installed revision.
  - The backend store URI is read from the server's root-only environment file, so it never appears
    in the task's arguments, its result or a process list.
  - Runs with the Python of MLflow's virtual environment (SQLAlchemy, the database driver and MLflow,
    imported only when something must be migrated or a head revision is not recorded).
options:
  env_file:
    description: The server's environment file, where O(uri_variable) holds the backend store URI.
    type: path
    required: true
  uri_variable:
    description: The variable of O(env_file) that holds the backend store URI.
    type: str
    default: MLFLOW_BACKEND_STORE_URI
  head_file:
    description:
      - File holding the installed MLflow's backend schema head (the mlflow role records it).
      - Without it the head is asked from MLflow (slower).
    type: path
  backend:
    description:
      - What to do with the backend store's schema.
      - V(ignore) for a server without one (C(--artifacts-only)).
      - V(status) reads its revision; V(migrate) also migrates it when it is behind.
    type: str
    choices: [ignore, status, migrate]
    default: status
  auth_database:
    description: Name of the basic-auth app's database, created on the backend's server when missing.
    type: str
  auth_config:
    description:
      - The auth app's C(basic_auth.ini); its database is brought to O(auth_head_file)'s revision
        (with O(auth=status), only read).
    type: path
  auth:
    description:
      - What to do with the auth database of O(auth_config).
      - V(migrate) brings it to O(auth_head_file)'s revision; V(status) reads its revision against it
        (without O(auth_head_file), the installed MLflow's) and reports whether it is behind.
      - With O(backend=ignore) and no O(auth_database), the auth database alone is settled (what the
        upgrade does, with the target release's head file and interpreter).
    type: str
    choices: [migrate, status]
    default: migrate
  auth_head_file:
    description: File holding the installed MLflow's auth schema head (the mlflow role records it).
    type: path
  connections_needed:
    description:
      - The connections the servers sharing this database may open together (their pools); when set, the
        database server's C(max_connections) less its reserved connections is read first (PostgreSQL, MySQL),
        and the module fails, changing nothing, when they exceed it.
      - Nothing is read on SQLite.
    type: int
  connections_text:
    description: How O(connections_needed) was counted, and what to change, for the failure's message.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Connects and reads; reports as changed the database it would create and the schemas it would migrate.
  diff_mode:
    support: full
    description: Shows the auth database and both schemas' revisions before and after.
requirements:
  - SQLAlchemy and the database driver (MLflow's virtual environment has them)
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Create and migrate the databases before the server starts
  mlflow_ansible.tracking.mlflow_schema:
    env_file: /etc/mlflow/mlflow.env
    head_file: /opt/mlflow/current/mlflow-ansible-schema-head
    backend: migrate
    auth_database: mlflow_auth
    auth_config: /etc/mlflow/basic_auth.ini
    auth_head_file: /opt/mlflow/current/mlflow-ansible-auth-head
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python

- name: Refuse a deploy whose pools would not fit in the database server's max_connections
  mlflow_ansible.tracking.mlflow_schema:
    env_file: /etc/mlflow/mlflow.env
    head_file: /opt/mlflow/current/mlflow-ansible-schema-head
    connections_needed: 88
    connections_text: "2 servers x 44 connections"
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python

- name: Read the backend's revision only
  mlflow_ansible.tracking.mlflow_schema:
    env_file: /etc/mlflow/mlflow.env
    head_file: /opt/mlflow/current/mlflow-ansible-schema-head
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python

- name: Read both revisions against a newly installed release, migrating nothing
  mlflow_ansible.tracking.mlflow_schema:
    env_file: /etc/mlflow/mlflow.env
    head_file: /opt/mlflow/venvs/3.17.2/mlflow-ansible-schema-head
    auth: status
    auth_config: /etc/mlflow/basic_auth.ini
    auth_head_file: /opt/mlflow/venvs/3.17.2/mlflow-ansible-auth-head
  vars:
    ansible_python_interpreter: /opt/mlflow/venvs/3.17.2/bin/python

- name: Migrate the auth database alone, with the new release
  mlflow_ansible.tracking.mlflow_schema:
    env_file: /etc/mlflow/mlflow.env
    backend: ignore
    auth_config: /etc/mlflow/basic_auth.ini
    auth_head_file: /opt/mlflow/venvs/3.17.2/mlflow-ansible-auth-head
  vars:
    ansible_python_interpreter: /opt/mlflow/venvs/3.17.2/bin/python
"""

RETURN = r"""
connection_limits:
  description:
    - The database server's C(max_connections), the connections it reserves for superusers and what is left
      (C(available)), with the O(connections_needed) it was checked against.
  returned: when O(connections_needed) is set and the backend is PostgreSQL or MySQL
  type: dict
  sample: {"max_connections": 100, "reserved": 3, "available": 97, "needed": 88}
auth_database:
  description: The auth database, when O(auth_database) is set.
  returned: when O(auth_database) is set
  type: dict
  sample: {"database": "mlflow_auth", "created": true}
auth_schema:
  description:
    - The auth database's revisions and what was done (none, upgraded).
    - With O(auth=status), also whether it is behind the head (C(behind)); nothing is done.
  returned: when O(auth_config) is set
  type: dict
  sample: {"before": null, "after": "0a7f8b2c", "head": "0a7f8b2c", "action": "upgraded"}
status:
  description:
    - The backend schema's revision before and after, the installed head, whether it was behind and
      what was done (none, initialized, upgraded).
  returned: unless O(backend=ignore)
  type: dict
  sample: {"before": "1b5f0d9ad7c1", "after": "1b5f0d9ad7c1", "head": "1b5f0d9ad7c1", "behind": false, "action": "none"}
"""

import os  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_schema import (  # noqa: E402
    connection_limits,
    prepare,
    read_env_file,
)

try:
    import sqlalchemy
except ImportError:
    SQLALCHEMY_IMPORT_ERROR = traceback.format_exc()
    sqlalchemy = None
else:
    SQLALCHEMY_IMPORT_ERROR = None


def _diff(result: dict) -> dict:
    def lines(which: str) -> str:
        out = []
        if "auth_database" in result:
            exists = which == "after" or not result["auth_database"].get("created")
            out.append(f"auth database {result['auth_database']['database']}: {'present' if exists else 'absent'}")
        if "auth_schema" in result:
            out.append(f"auth schema: {result['auth_schema'].get(which) or '(none)'}")
        if "status" in result:
            out.append(f"backend schema: {result['status'].get(which) or '(none)'}")
        return "\n".join(out) + "\n"

    return {"before": lines("before"), "after": lines("after")}


def run(module) -> dict:
    params = module.params
    env_file = params["env_file"]
    if not os.path.exists(env_file):
        if module.check_mode:  # a host the deploy has not configured yet: everything is still to do
            return {"changed": True, "msg": f"{env_file} is not written yet: the databases would be settled"}
        module.fail_json(msg=f"{env_file} does not exist: write the server's environment file first")
    uri = read_env_file(env_file).get(params["uri_variable"])
    if not uri:
        module.fail_json(msg=f"{params['uri_variable']} is not set in {env_file}")
    auth_config = params["auth_config"]
    if auth_config and not os.path.exists(auth_config):
        if module.check_mode:
            return {"changed": True, "msg": f"{auth_config} is not written yet: the auth database would be settled"}
        module.fail_json(msg=f"auth_config {auth_config} does not exist")

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    limits = None
    try:
        if params["connections_needed"] is not None:
            limits = connection_limits(engine)
    except Exception as exc:  # any database error, without the URI (it may hold a password)
        engine.dispose()
        module.fail_json(msg=f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")[:2000])
    if limits is not None:
        limits["needed"] = params["connections_needed"]
        if limits["needed"] > limits["available"]:
            engine.dispose()
            reserved = f" less {limits['reserved']} reserved" if limits["reserved"] else ""
            module.fail_json(
                msg=f"The servers sharing this database may open {limits['needed']} connections, but its server "
                    f"allows {limits['available']} (max_connections {limits['max_connections']}{reserved}): "
                    f"{params['connections_text']}".rstrip(": "),
                connection_limits=limits,
            )
    try:
        result = prepare(
            engine,
            database=params["auth_database"],
            auth_config=auth_config,
            auth_head_file=params["auth_head_file"],
            status=params["backend"] != "ignore",
            head_file=params["head_file"],
            migrate=params["backend"] == "migrate",
            check=module.check_mode,
            auth_migrate=params["auth"] == "migrate",
        )
    except Exception as exc:  # any database error, without the URI (it may hold a password)
        module.fail_json(msg=f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")[:2000])
    finally:
        engine.dispose()
    if limits is not None:
        result["connection_limits"] = limits
    changed = (
        bool(result.get("auth_database", {}).get("created"))
        or result.get("auth_schema", {}).get("action", "none") != "none"
        or result.get("status", {}).get("action", "none") != "none"
    )
    result["changed"] = changed
    if module._diff:
        result["diff"] = _diff(result)
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "env_file": {"type": "path", "required": True},
            "uri_variable": {"type": "str", "default": "MLFLOW_BACKEND_STORE_URI"},
            "head_file": {"type": "path"},
            "backend": {"type": "str", "choices": ["ignore", "status", "migrate"], "default": "status"},
            "auth_database": {"type": "str"},
            "auth_config": {"type": "path"},
            "auth_head_file": {"type": "path"},
            "auth": {"type": "str", "choices": ["migrate", "status"], "default": "migrate"},
            "connections_needed": {"type": "int"},
            "connections_text": {"type": "str", "default": ""},
        },
        required_by={"auth_head_file": "auth_config"},
        supports_check_mode=True,
    )
    if sqlalchemy is None:
        module.fail_json(msg=missing_required_lib("SQLAlchemy"), exception=SQLALCHEMY_IMPORT_ERROR)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
