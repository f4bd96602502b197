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
                       "connections_needed": None, "connections_text": "",
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


@pytest.fixture(scope="module")
def postgresql():
    """A PostgreSQL server of its own on loopback (Debian's binaries, run as the postgres user), with a
    max_connections and superuser_reserved_connections of its own."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
    if not os.path.exists(initdb):
        pytest.skip("no PostgreSQL server binaries on this machine")
    # Outside pytest's root-only temporary directory: the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="mlflow-schema-pg-"))
    data, run = base / "data", base / "run"
    run.mkdir()
    shutil.chown(base, "postgres")
    shutil.chown(run, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_postgres, initdb, "-A", "trust", "-U", "postgres", "-D", str(data)], check=True,
                   capture_output=True, cwd=base)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*as_postgres, str(Path(initdb).with_name("postgres")), "-D", str(data), "-k", str(run),
                               "-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=37",
                               "-c", "superuser_reserved_connections=2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base)
    uri = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    for _ in range(100):
        try:
            with engine.connect():
                break
        except sqlalchemy.exc.OperationalError:
            time.sleep(0.1)
    yield {"uri": uri, "engine": engine}
    engine.dispose()
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def _databases(engine) -> list[str]:
    import sqlalchemy

    with engine.connect() as connection:
        return [row[0] for row in connection.execute(sqlalchemy.text("SELECT datname FROM pg_database"))]


def test_the_servers_pools_against_postgresqls_own_max_connections(postgresql, tmp_path):
    """The module reads max_connections and the reserved connections first: a total that fits goes on (and is
    reported), one above them fails before anything is created."""
    env_file = tmp_path / "mlflow.env"
    env_file.write_text(f'MLFLOW_BACKEND_STORE_URI="{postgresql["uri"]}"\n')
    fits = schema_module.run(FakeModule(env_file=str(env_file), backend="ignore", auth_database="mlflow_auth_fits",
                                        connections_needed=35, connections_text="vm1: 35"))
    assert fits["connection_limits"] == {"max_connections": 37, "reserved": 2, "available": 35, "needed": 35}
    assert fits["changed"] is True and "mlflow_auth_fits" in _databases(postgresql["engine"])

    with pytest.raises(Failed) as refused:
        schema_module.run(FakeModule(env_file=str(env_file), backend="ignore", auth_database="mlflow_auth_refused",
                                     connections_needed=36, connections_text="vm1: 18; vm2: 18. Lower the pools"))
    assert str(refused.value) == ("The servers sharing this database may open 36 connections, but its server allows 35 "
                                  "(max_connections 37 less 2 reserved): vm1: 18; vm2: 18. Lower the pools")
    assert "mlflow_auth_refused" not in _databases(postgresql["engine"])
    # Without a count nothing is read.
    assert "connection_limits" not in schema_module.run(FakeModule(env_file=str(env_file), backend="ignore"))


def test_sqlite_has_no_connection_limit(server):
    done = schema_module.run(FakeModule(env_file=server["env_file"], head_file=server["head_file"],
                                        connections_needed=10**6, connections_text="far too many"))
    assert "connection_limits" not in done and done["status"]["behind"] is True
