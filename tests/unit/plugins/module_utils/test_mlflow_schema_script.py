"""module_utils/mlflow_schema.py as the script the role installs on the VM, on real SQLite databases:
the unit's start guard (``check``) and ``prepare``.

The backup, restore and prune of the upgrade are the mlflow_backup module's (tests/unit/plugins/modules).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
# mlflow_schema.py is the mlflow_schema module's code too; the role installs it beside the helpers on the VM.
MODULE_UTILS = ROOT / "plugins" / "module_utils"


def helper(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    script = MODULE_UTILS / name
    env = dict(os.environ if env is None else env, PYTHONPATH=str(MODULE_UTILS))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False, env=env)


def make_db(path: Path, table: str, revision: str, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE {table} (version_num VARCHAR(32) NOT NULL)")
        db.execute(f"INSERT INTO {table} VALUES (?)", (revision,))  # noqa: S608 - the test names the table
        db.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO runs VALUES (?, ?)", [(f"r{i}", f"run {i}") for i in range(rows)])


@pytest.fixture
def server(tmp_path):
    """A tracking and an auth SQLite database, with the env file and basic_auth.ini that name them."""
    tracking, auth = tmp_path / "mlflow.db", tmp_path / "auth.db"
    make_db(tracking, "alembic_version", "rev_old", 5)
    make_db(auth, "alembic_version_auth", "auth_old", 2)
    env_file = tmp_path / "mlflow.env"
    env_file.write_text(f'MLFLOW_BACKEND_STORE_URI="sqlite:///{tracking}"\n')
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndatabase_uri = sqlite:///{auth}\n")
    return {"tracking": tracking, "auth": auth, "env": str(env_file), "ini": str(ini)}


def test_start_guard_refuses_a_schema_that_is_not_the_installed_one(server, tmp_path):
    heads = {name: tmp_path / name for name in ("head", "auth-head")}
    heads["head"].write_text("rev_old\n")
    heads["auth-head"].write_text("auth_old\n")
    env = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{server['tracking']}", "PATH": "/usr/bin:/bin"}
    args = [
        "--head-file",
        str(heads["head"]),
        "--auth-head-file",
        str(heads["auth-head"]),
        "--auth-config",
        server["ini"],
        "check",
    ]
    assert helper("mlflow_schema.py", *args, env=env).returncode == 0

    heads["head"].write_text("rev_new\n")  # a newer MLflow on the old database
    refused = helper("mlflow_schema.py", *args, env=env)
    assert refused.returncode == 1
    assert "backend store is at revision rev_old but this MLflow expects rev_new" in refused.stderr

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    env["MLFLOW_BACKEND_STORE_URI"] = f"sqlite:///{empty}"
    heads["head"].write_text("rev_old\n")
    assert "(none: no schema)" in helper("mlflow_schema.py", *args, env=env).stderr


def test_prepare_reads_and_settles_both_databases_in_one_call(server, tmp_path):
    """The deploy's one helper call: the auth database (created when missing on a server, skipped for
    SQLite), brought to its head (nothing to do when current: MLflow is not even imported), and the
    backend schema's revision against the installed head."""
    heads = {name: tmp_path / name for name in ("head", "auth-head")}
    heads["head"].write_text("rev_old\n")
    heads["auth-head"].write_text("auth_old\n")
    args = ["--env-file", server["env"], "--database", "mlflow_auth", "--auth-config", server["ini"],
            "--auth-head-file", str(heads["auth-head"]), "--status", "--head-file", str(heads["head"]), "prepare"]
    done = helper("mlflow_schema.py", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["auth_database"] == {"database": "mlflow_auth", "created": False,
                                       "skipped": "no database server (sqlite)"}
    assert answer["auth_schema"] == {"before": "auth_old", "after": "auth_old", "head": "auth_old", "action": "none"}
    assert answer["status"]["before"] == "rev_old" and answer["status"]["behind"] is False

    heads["head"].write_text("rev_new\n")  # a newer MLflow: the backend is behind, the play migrates it
    behind = json.loads(helper("mlflow_schema.py", *args).stdout)
    assert behind["status"]["behind"] is True and behind["status"]["head"] == "rev_new"

    # Without --status (an artifacts-only server) no backend revision is read; without auth, no auth step.
    only_auth = json.loads(helper("mlflow_schema.py", *args[:8], "prepare").stdout)
    assert set(only_auth) == {"auth_database", "auth_schema"}
    assert json.loads(helper("mlflow_schema.py", "--env-file", server["env"], "prepare").stdout) == {}


def test_prepare_migrates_an_empty_backend_in_the_same_call(tmp_path):
    """A cold deploy: prepare --migrate brings an empty backend to the installed MLflow's head in the
    helper call that settled the auth database (one Python start where a deploy paid two); a second
    call finds nothing to do."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    env_file = tmp_path / "mlflow.env"
    env_file.write_text(f'MLFLOW_BACKEND_STORE_URI="sqlite:///{tmp_path / "mlflow.db"}"\n')
    head = tmp_path / "head"
    head.write_text(_get_latest_schema_revision() + "\n")
    args = ["--env-file", str(env_file), "--head-file", str(head), "--migrate", "prepare"]
    first = helper("mlflow_schema.py", *args)
    assert first.returncode == 0, first.stdout + first.stderr
    status = json.loads(first.stdout)["status"]
    assert status["behind"] is True and status["action"] != "none"
    assert status["after"] == status["head"] == head.read_text().strip()
    again = json.loads(helper("mlflow_schema.py", *args).stdout)["status"]
    assert again["behind"] is False and again["action"] == "none"


def test_an_error_message_never_shows_a_database_uri():
    """The mlflow_users and mlflow_oidc_grants modules fail with this message: the URIs they opened (a password in
    them) are replaced, the error's type and the rest of its text kept."""
    sys.path.insert(0, str(MODULE_UTILS))
    try:
        from mlflow_schema import error_without_secrets
    finally:
        sys.path.remove(str(MODULE_UTILS))
    uri = "postgresql://mlflow:s3cr%40t@10.0.0.5:5432/mlflow_auth"
    error = ConnectionError(f"could not connect to {uri}: timeout after 10 s ({uri})")
    message = error_without_secrets(error, [uri, ""], limit=200)
    assert "s3cr" not in message
    assert message == "ConnectionError: could not connect to <database URI>: timeout after 10 s (<database URI>)"
    assert len(error_without_secrets(RuntimeError("x" * 5000), [uri])) == 2000
