#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Back up, check, restore or prune the databases and local artifacts of an MLflow tracking server."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_backup
short_description: Back up and restore the databases and artifacts of an MLflow tracking server
version_added: "0.1.0"
description:
  - What the upgrade does before it migrates a database, and after a failed upgrade; what the restore
    action does (V(verified), then V(restore)). The backup unit (scheduled backups and the backup action)
    runs the same code (module_utils/mlflow_backup.py) on the VM.
  - V(backup) dumps the backend store and, with O(auth_config), the basic-auth app's database into
    O(dest)/O(label) (mode 0700, every file 0600), with O(artifacts_dir) also an uncompressed tar of the
    artifacts, then writes C(manifest.json) there (last, so a directory without one is an incomplete backup,
    never counted nor restored). The manifest records the MLflow version of the Python running the module,
    per database its dialect, alembic revision, file, size and sha256, and the artifacts' file, size and
    sha256. A failed dump leaves no directory.
  - V(verified) finds the backup O(source) names (a label of O(dest) or O(destination), C(latest), a
    C(gs://) or C(s3://) URL of one backup, or an absolute path on the host), downloads a bucket's into
    O(staging) (root only), and refuses it, changing nothing, when a file does not match its sha256, when
    it was taken with a newer MLflow than the one installed, when it holds artifacts but O(artifacts_dir) is
    unset, or (unless O(force)) when the target databases hold data a deploy does not make itself.
  - V(restore) puts every database of O(manifest) back as it was, and the artifacts into O(artifacts_dir)
    (what it held is replaced; files take its owner). Every file is checked against its sha256 first
    (a changed backup touches nothing), then each database is restored and its revision compared with
    the manifest's.
  - V(pruned) removes all but the O(keep) newest complete backups of O(dest) (by label, which the
    upgrade begins with a UTC timestamp).
  - "PostgreSQL: C(pg_dump) custom format; the restore drops every table, then C(pg_restore) in one
    transaction. MySQL/MariaDB: C(mariadb-dump --single-transaction); the restore drops every table,
    then replays the dump with C(mariadb). SQLite: SQLite's online backup API."
  - The URIs are read from the server's root-only environment file and C(basic_auth.ini), so they never
    appear in the task's arguments, its result or a process list; passwords reach the client tools
    through a private 0600 file. Error messages show C(<tracking database URI>) in place of a URI.
  - Runs with the Python of an MLflow virtual environment (SQLAlchemy and the database driver), the
    active one's for a backup or a restore of the databases it serves.
options:
  state:
    description:
      - V(backup) takes a new backup O(label) in O(dest).
      - V(verified) finds, fetches and checks the backup O(source) for a restore onto this host.
      - V(restore) restores the backup whose manifest is O(manifest).
      - V(pruned) keeps the O(keep) newest complete backups of O(dest) and removes the others.
    type: str
    choices: [backup, verified, restore, pruned]
    required: true
  env_file:
    description:
      - The server's environment file, where O(uri_variable) holds the backend store URI.
      - Required with O(state=backup), O(state=verified) and O(state=restore).
    type: path
  uri_variable:
    description: The variable of O(env_file) that holds the backend store URI.
    type: str
    default: MLFLOW_BACKEND_STORE_URI
  auth_config:
    description: The basic-auth app's C(basic_auth.ini); its database is backed up or restored too.
    type: path
  dest:
    description:
      - The directory of the backups (created mode 0700 when missing).
      - Required with O(state=backup), O(state=verified) and O(state=pruned).
    type: path
  label:
    description:
      - The new backup's directory name under O(dest) (one path component). Required with O(state=backup).
      - A label that exists already fails the task.
    type: str
  manifest:
    description: The C(manifest.json) of the backup to restore. Required with O(state=restore).
    type: path
  artifacts_dir:
    description:
      - The server's artifact directory (artifacts on the host's disk).
      - With O(state=backup) it is archived into the backup; with O(state=restore) what the backup holds
        replaces what it holds; with O(state=verified) a backup holding artifacts is refused without it.
    type: path
  source:
    description:
      - The backup to check, with O(state=verified) (required there), as the restore action's C(--from).
      - A label of O(destination) (or of O(dest) when O(destination) is empty), C(latest) (the newest
        complete one there), a C(gs://BUCKET/PREFIX/LABEL) or C(s3://BUCKET/PREFIX/LABEL) URL, or an
        absolute path on the host (a backup's directory or its C(manifest.json)).
    type: str
  destination:
    description:
      - Where the backups go when not O(dest) itself, C(gs://BUCKET/PREFIX) or C(s3://BUCKET/PREFIX), for
        O(state=verified) to find a label in. The server's own endpoints and credentials are used.
    type: str
    default: ""
  staging:
    description:
      - A directory (root only, emptied first) a bucket's backup is downloaded into with O(state=verified).
      - In check mode a temporary directory is used and removed.
    type: path
  force:
    description: With O(state=verified), accept a target whose databases hold data (the restore replaces it).
    type: bool
    default: false
  canary_experiment:
    description: The experiment the canary writes to, which O(state=verified) does not count as data.
    type: str
    default: ""
  deploy_users:
    description: The basic-auth users a deploy makes (the admin, the server's own), not counted as data.
    type: list
    elements: str
    default: []
  keep:
    description: How many complete backups O(state=pruned) keeps (the newest). Required with O(state=pruned).
    type: int
attributes:
  check_mode:
    support: full
    description:
      - V(backup) reads each database's revision and reports the backup it would take (changed), writing nothing.
      - V(restore) checks the dumps against the manifest, reads the current revisions and reports the
        restore (changed), writing nothing.
      - V(verified) makes every check; a bucket's backup is downloaded into a temporary directory, removed afterwards.
      - V(pruned) reports the backups it would remove.
  diff_mode:
    support: full
    description:
      - V(backup) and V(pruned) show the complete backups of O(dest) before and after.
      - V(restore) shows each database's revision before and after.
requirements:
  - SQLAlchemy and the database driver (MLflow's virtual environment has them), for O(state=backup) and O(state=restore)
  - C(pg_dump) and C(pg_restore) for PostgreSQL, C(mariadb-dump) and C(mariadb) for MySQL/MariaDB
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Back up the databases before they change
  mlflow_ansible.tracking.mlflow_backup:
    state: backup
    env_file: /etc/mlflow/mlflow.env
    auth_config: /etc/mlflow/basic_auth.ini
    dest: /var/backups/mlflow
    label: 20261122T120000Z-2.22.5-to-3.17.2
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python
  register: backup

- name: Restore them after a failed upgrade
  mlflow_ansible.tracking.mlflow_backup:
    state: restore
    env_file: /etc/mlflow/mlflow.env
    auth_config: /etc/mlflow/basic_auth.ini
    manifest: "{{ backup.manifest }}"
  vars:
    ansible_python_interpreter: /opt/mlflow/venvs/2.22.5/bin/python

- name: Fetch the newest backup of a bucket and check it before a restore
  mlflow_ansible.tracking.mlflow_backup:
    state: verified
    env_file: /etc/mlflow/mlflow.env
    auth_config: /etc/mlflow/basic_auth.ini
    dest: /var/backups/mlflow
    destination: gs://my-backups/mlflow
    source: latest
    staging: /var/backups/mlflow/.restore
    artifacts_dir: /var/lib/mlflow/artifacts
    canary_experiment: mlflow-ansible-canary
    deploy_users: [admin]
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python
  register: checked

- name: Restore it, artifacts too (the server stopped)
  mlflow_ansible.tracking.mlflow_backup:
    state: restore
    env_file: /etc/mlflow/mlflow.env
    auth_config: /etc/mlflow/basic_auth.ini
    manifest: "{{ checked.manifest }}"
    artifacts_dir: /var/lib/mlflow/artifacts
  vars:
    ansible_python_interpreter: /opt/mlflow/current/bin/python

- name: Keep the five newest backups
  mlflow_ansible.tracking.mlflow_backup:
    state: pruned
    dest: /var/backups/mlflow
    keep: 5
"""

RETURN = r"""
manifest:
  description:
    - The backup's C(manifest.json) (with O(state=backup), the one written, or in check mode the one it would write).
  returned: when O(state) is V(backup), V(verified) or V(restore)
  type: str
  sample: /var/backups/mlflow/20261122T120000Z-2.22.5-to-3.17.2/manifest.json
label:
  description: The backup's label.
  returned: when O(state) is V(backup), V(verified) or V(restore)
  type: str
  sample: 20261122T120000Z-2.22.5-to-3.17.2
mlflow_version:
  description: The MLflow version that served the data backed up (none in backups of earlier releases).
  returned: when O(state) is V(backup) (not in check mode) or V(verified)
  type: str
  sample: 3.17.2
installed_mlflow_version:
  description: The MLflow version installed where the module ran.
  returned: when O(state=verified)
  type: str
  sample: 3.17.2
artifacts:
  description:
    - With O(state=backup) and O(state=verified), the archive of the artifacts the manifest records (null without one).
    - With O(state=restore), the directory the artifacts were restored into.
  returned: when O(state) is V(backup), V(verified) or V(restore) with artifacts
  type: raw
  sample: {"file": "artifacts.tar", "source": "/var/lib/mlflow/artifacts", "bytes": 102400, "sha256": "5e1b..."}
replaced:
  description: What the target databases held beyond a fresh deploy's (only with O(force); otherwise refused).
  returned: when O(state=verified)
  type: list
  elements: str
  sample: ["3 experiments in the tracking database"]
created:
  description: When the backup was taken (UTC, ISO 8601).
  returned: when O(state=backup), not in check mode
  type: str
  sample: "2026-11-22T12:00:00+00:00"
databases:
  description:
    - The databases backed up, as the manifest records them (in check mode, without C(bytes) and C(sha256)).
  returned: when O(state) is V(backup) or V(verified)
  type: list
  elements: dict
  sample:
    - {"database": "tracking", "dialect": "postgresql", "revision": "1b5f0d9ad7c1", "file": "tracking.pgdump",
       "bytes": 48213, "sha256": "9f2c..."}
    - {"database": "auth", "dialect": "postgresql", "revision": "0a7f8b2c", "file": "auth.pgdump",
       "bytes": 9120, "sha256": "41d0..."}
before:
  description: Each database's revision before the restore.
  returned: when O(state=restore)
  type: dict
  sample: {"tracking": "1b5f0d9ad7c1", "auth": "0a7f8b2c"}
restored:
  description: Each database restored and the revision it is at afterwards (in check mode, the one it would be at).
  returned: when O(state=restore)
  type: list
  elements: dict
  sample: [{"database": "tracking", "revision": "f5a4f2784254"}]
removed:
  description: The labels of the backups removed (in check mode, those it would remove).
  returned: when O(state=pruned)
  type: list
  elements: str
  sample: ["20260101T000000Z-2.22.5-to-3.1.0"]
kept:
  description: The labels of the complete backups kept, newest first.
  returned: when O(state=pruned)
  type: list
  elements: str
  sample: ["20261122T120000Z-2.22.5-to-3.17.2"]
"""

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_backup import (  # noqa: E402
    backup,
    bucket_environment,
    check_restore,
    complete_backups,
    database_uris,
    is_bucket,
    mask,
    prune,
    resolve_source,
    restore,
    stage,
)

try:
    import sqlalchemy
except ImportError:
    SQLALCHEMY_IMPORT_ERROR = traceback.format_exc()
    sqlalchemy = None
else:
    SQLALCHEMY_IMPORT_ERROR = None


def _listing(labels: list[str]) -> str:
    return "".join(f"{label}\n" for label in sorted(labels))


def verified(module, uris: dict[str, str]) -> dict:
    """Find, fetch and check the backup for a restore; changed when a bucket's was downloaded."""
    params = module.params
    # The bucket's endpoint and credentials are the server's (as the backup unit has them).
    os.environ.update(bucket_environment(params["env_file"]))
    where, label = resolve_source(params["source"], params["dest"], params["destination"] or None)
    remote = is_bucket(where)
    staging = tempfile.mkdtemp(prefix="mlflow-restore-check-") if module.check_mode else params["staging"]
    try:
        manifest = stage(where, label, staging)
        result = check_restore(manifest, uris, params["artifacts_dir"], params["force"],
                               params["canary_experiment"], tuple(params["deploy_users"]))
    except BaseException:
        if remote:  # a refused restore leaves nothing behind, not even its download
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if module.check_mode:
            shutil.rmtree(staging, ignore_errors=True)
    result.update(source=where, changed=remote and not module.check_mode)
    return result


def run(module) -> dict:
    params = module.params
    state, check = params["state"], module.check_mode
    if state == "pruned":
        if params["keep"] < 0:
            module.fail_json(msg=f"keep must be 0 or more, not {params['keep']}")
        before = complete_backups(params["dest"])
        result = prune(params["dest"], params["keep"], check)
        result["changed"] = bool(result["removed"])
        if module._diff:
            result["diff"] = {"before": _listing(before), "after": _listing(result["kept"])}
        return result

    for path in (params["env_file"], params["auth_config"]):
        if path and not os.path.exists(path):
            module.fail_json(msg=f"{path} does not exist")
    uris: dict[str, str] = {}
    try:
        uris = database_uris(params["env_file"], params["uri_variable"], params["auth_config"])
        if state == "backup":
            before = complete_backups(params["dest"])
            result = backup(uris, params["dest"], params["label"], check, params["artifacts_dir"])
            if module._diff:
                result["diff"] = {"before": _listing(before), "after": _listing(before + [params["label"]])}
        elif state == "verified":
            return verified(module, uris)
        else:
            result = restore(uris, params["manifest"], check, params["artifacts_dir"])
            if module._diff:
                result["diff"] = {
                    "before": "".join(f"{name}: {rev or '(none)'}\n" for name, rev in result["before"].items()),
                    "after": "".join(f"{entry['database']}: {entry['revision'] or '(none)'}\n"
                                     for entry in result["restored"]),
                }
    except Exception as exc:  # any database or tool error, without the URIs
        module.fail_json(msg=mask(f"{type(exc).__name__}: {exc}", uris)[:3000])
    result["changed"] = True
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "required": True, "choices": ["backup", "verified", "restore", "pruned"]},
            "env_file": {"type": "path"},
            "uri_variable": {"type": "str", "default": "MLFLOW_BACKEND_STORE_URI"},
            "auth_config": {"type": "path"},
            "dest": {"type": "path"},
            "label": {"type": "str"},
            "manifest": {"type": "path"},
            "keep": {"type": "int"},
            "artifacts_dir": {"type": "path"},
            "source": {"type": "str"},
            "destination": {"type": "str", "default": ""},
            "staging": {"type": "path"},
            "force": {"type": "bool", "default": False},
            "canary_experiment": {"type": "str", "default": ""},
            "deploy_users": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[
            ("state", "backup", ["env_file", "dest", "label"]),
            ("state", "verified", ["env_file", "dest", "source", "staging"]),
            ("state", "restore", ["env_file", "manifest"]),
            ("state", "pruned", ["dest", "keep"]),
        ],
        supports_check_mode=True,
    )
    if sqlalchemy is None and module.params["state"] != "pruned":
        module.fail_json(msg=missing_required_lib("SQLAlchemy"), exception=SQLALCHEMY_IMPORT_ERROR)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
