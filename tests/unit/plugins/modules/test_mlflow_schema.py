"""The mlflow_schema module on real SQLite databases, migrated by MLflow's own code.

Check mode reads and reports as changed what a run would create or migrate, and writes nothing; the
run migrates; a second run finds nothing to do; the diff shows the revisions.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from module_loader import load_module

schema_module = load_module("mlflow_schema")


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, diff=False, **params):
        self.check_mode = check_mode
        self._diff = diff
        self.params = {"uri_variable": "MLFLOW_BACKEND_STORE_URI", "head_file": None, "backend": "status",
                       "auth_database": None, "auth_config": None, "auth_head_file": None, "auth": "migrate",
                       **params}

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)


@pytest.fixture
def server(tmp_path):
    """An env file naming an empty backend, a basic_auth.ini naming an empty auth database, and the heads
    the mlflow role records (read from the installed MLflow here)."""
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_config
    from mlflow.store.db.utils import _get_latest_schema_revision

    env_file = tmp_path / "mlflow.env"
    env_file.write_text(f'MLFLOW_BACKEND_STORE_URI="sqlite:///{tmp_path / "mlflow.db"}"\n')
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n")
    heads = {"schema": tmp_path / "schema-head", "auth": tmp_path / "auth-head"}
    heads["schema"].write_text(_get_latest_schema_revision() + "\n")
    heads["auth"].write_text(ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_current_head() + "\n")
    return {"env_file": str(env_file), "auth_config": str(ini), "head_file": str(heads["schema"]),
            "auth_head_file": str(heads["auth"]), "auth_database": "mlflow_auth", "dir": tmp_path}


def _tables(path: Path) -> list[str]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def test_check_mode_reports_the_migrations_and_writes_nothing_then_the_run_does_them(server):
    params = {key: server[key] for key in ("env_file", "auth_config", "head_file", "auth_head_file", "auth_database")}
    checked = schema_module.run(FakeModule(check_mode=True, diff=True, backend="migrate", **params))
    assert checked["changed"] is True
    assert checked["status"]["behind"] is True and checked["status"]["action"] == "initialized"
    assert checked["auth_schema"]["action"] == "upgraded" and checked["auth_schema"]["before"] is None
    assert "backend schema: (none)" in checked["diff"]["before"]
    assert checked["status"]["head"] in checked["diff"]["after"]
    assert _tables(server["dir"] / "mlflow.db") == [] and "users" not in _tables(server["dir"] / "auth.db")

    done = schema_module.run(FakeModule(backend="migrate", **params))
    assert done["changed"] is True and done["status"]["action"] == "initialized"
    assert done["status"]["after"] == done["status"]["head"]
    assert done["auth_schema"]["after"] == done["auth_schema"]["head"]
    assert "experiments" in _tables(server["dir"] / "mlflow.db") and "users" in _tables(server["dir"] / "auth.db")

    again = schema_module.run(FakeModule(check_mode=True, backend="migrate", **params))
    assert again["changed"] is False and again["status"]["behind"] is False
    assert schema_module.run(FakeModule(backend="migrate", **params))["changed"] is False


def test_status_only_never_migrates_and_a_missing_env_file(server):
    status = schema_module.run(FakeModule(env_file=server["env_file"], head_file=server["head_file"]))
    assert status["changed"] is False and status["status"]["behind"] is True
    assert _tables(server["dir"] / "mlflow.db") == []
    missing = str(server["dir"] / "nope.env")
    # A host the deploy has not configured yet: check mode says all is still to do; a run refuses.
    assert schema_module.run(FakeModule(check_mode=True, env_file=missing))["changed"] is True
    with pytest.raises(Failed, match="nope.env does not exist"):
        schema_module.run(FakeModule(env_file=missing))


def test_auth_status_reads_the_revision_and_migrates_nothing(server):
    """What the upgrade asks first (auth: status): whether the auth database is behind the new release's head,
    without touching it; then the auth database alone (backend: ignore) is migrated, as the upgrade does."""
    (server["dir"] / "auth.db").touch()  # an empty database: no revision yet
    params = {"env_file": server["env_file"], "auth_config": server["auth_config"],
              "auth_head_file": server["auth_head_file"]}
    head = Path(server["auth_head_file"]).read_text().strip()
    status = schema_module.run(FakeModule(auth="status", backend="ignore", **params))
    assert status["changed"] is False and "status" not in status
    assert status["auth_schema"] == {"before": None, "after": None, "head": head, "behind": True, "action": "none"}
    assert "users" not in _tables(server["dir"] / "auth.db")

    migrated = schema_module.run(FakeModule(backend="ignore", **params))
    assert migrated["changed"] is True and migrated["auth_schema"]["after"] == head
    assert "users" in _tables(server["dir"] / "auth.db") and _tables(server["dir"] / "mlflow.db") == []
    current = schema_module.run(FakeModule(auth="status", backend="ignore", **params))
    assert current["auth_schema"]["behind"] is False and current["auth_schema"]["before"] == head
