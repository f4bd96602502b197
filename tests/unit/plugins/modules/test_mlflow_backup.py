"""The mlflow_backup module on real SQLite databases: backup, restore, prune, each in check mode too.

PostgreSQL (pg_dump/pg_restore) is exercised by the molecule `upgrade` scenario (a failed upgrade
restored from the backup this module took, then the real upgrade).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from module_loader import REPO, load_module

backup_module = load_module("mlflow_backup")


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, diff=False, **params):
        self.check_mode = check_mode
        self._diff = diff
        self.params = {"env_file": None, "uri_variable": "MLFLOW_BACKEND_STORE_URI", "auth_config": None,
                       "dest": None, "label": None, "manifest": None, "keep": None, "artifacts_dir": None,
                       "source": None, "destination": "", "staging": None, "force": False,
                       "canary_experiment": "", "deploy_users": [], **params}

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)


def make_db(path: Path, table: str, revision: str, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE {table} (version_num VARCHAR(32) NOT NULL)")
        db.execute(f"INSERT INTO {table} VALUES (?)", (revision,))  # noqa: S608 - the test names the table
        db.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO runs VALUES (?, ?)", [(f"r{i}", f"run {i}") for i in range(rows)])


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM runs ORDER BY run_uuid").fetchall()


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


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
    return {"tracking": tracking, "auth": auth, "env_file": str(env_file), "auth_config": str(ini),
            "dest": tmp_path / "backups"}


def take(server, label: str, **params) -> dict:
    return backup_module.run(FakeModule(state="backup", env_file=server["env_file"], dest=str(server["dest"]),
                                        label=label, **params))


def test_backup_then_restore_undoes_a_migration(server):
    result = take(server, "20261122T000000Z-a-to-b", auth_config=server["auth_config"])
    assert result["changed"] is True
    assert [(d["database"], d["revision"]) for d in result["databases"]] == [
        ("tracking", "rev_old"),
        ("auth", "auth_old"),
    ]
    manifest = Path(result["manifest"])
    assert json.loads(manifest.read_text())["databases"] == result["databases"]
    assert oct(manifest.stat().st_mode & 0o777) == "0o600"
    assert oct(server["dest"].stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in manifest.parent.iterdir())
    before = rows(server["tracking"])

    # What a migration does: new revision, a new table, changed rows.
    with sqlite3.connect(server["tracking"]) as db:
        db.execute("UPDATE alembic_version SET version_num = 'rev_new'")
        db.execute("CREATE TABLE logged_models (id TEXT)")
        db.execute("DELETE FROM runs WHERE run_uuid = 'r1'")

    restored = backup_module.run(FakeModule(diff=True, state="restore", env_file=server["env_file"],
                                            auth_config=server["auth_config"], manifest=str(manifest)))
    assert restored["changed"] is True
    assert restored["before"] == {"tracking": "rev_new", "auth": "auth_old"}
    assert restored["restored"] == [
        {"database": "tracking", "revision": "rev_old"},
        {"database": "auth", "revision": "auth_old"},
    ]
    assert restored["diff"] == {"before": "tracking: rev_new\nauth: auth_old\n",
                                "after": "tracking: rev_old\nauth: auth_old\n"}
    assert rows(server["tracking"]) == before
    assert "logged_models" not in tables(server["tracking"])


def test_check_mode_reports_backup_and_restore_and_writes_nothing(server):
    checked = take(server, "planned", check_mode=True, diff=True, auth_config=server["auth_config"])
    assert checked["changed"] is True
    assert checked["manifest"] == str(server["dest"] / "planned" / "manifest.json")
    assert [(d["database"], d["revision"], d["file"]) for d in checked["databases"]] == [
        ("tracking", "rev_old", "tracking.sqlite"),
        ("auth", "auth_old", "auth.sqlite"),
    ]
    assert checked["diff"] == {"before": "", "after": "planned\n"}
    assert not server["dest"].exists()

    manifest = take(server, "real")["manifest"]
    with sqlite3.connect(server["tracking"]) as db:
        db.execute("UPDATE alembic_version SET version_num = 'rev_new'")
    would = backup_module.run(FakeModule(check_mode=True, state="restore", env_file=server["env_file"],
                                         manifest=manifest))
    assert would["changed"] is True
    assert would["before"] == {"tracking": "rev_new"}
    assert would["restored"] == [{"database": "tracking", "revision": "rev_old"}]
    with sqlite3.connect(server["tracking"]) as db:  # untouched
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("rev_new",)


def test_restore_refuses_a_backup_that_changed(server):
    manifest = json.loads(Path(take(server, "one")["manifest"]).read_text())
    dump = server["dest"] / "one" / manifest["databases"][0]["file"]
    dump.write_bytes(dump.read_bytes() + b"x")
    with sqlite3.connect(server["tracking"]) as db:
        db.execute("UPDATE alembic_version SET version_num = 'rev_new'")
    for check_mode in (True, False):
        with pytest.raises(Failed, match="does not match the sha256"):
            backup_module.run(FakeModule(check_mode=check_mode, state="restore", env_file=server["env_file"],
                                         manifest=str(server["dest"] / "one" / "manifest.json")))
    with sqlite3.connect(server["tracking"]) as db:  # nothing was restored
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("rev_new",)


def test_a_label_taken_already_is_refused_and_left_alone(server):
    first = take(server, "same")
    with pytest.raises(Failed, match="exists already"):
        take(server, "same")
    with pytest.raises(Failed, match="one directory"):
        take(server, "../escape")
    assert Path(first["manifest"]).exists()


def test_prune_keeps_the_newest_complete_backups(server):
    for label in ("20260101", "20260201", "20260301"):
        assert take(server, label)["changed"] is True
    (server["dest"] / "20260401").mkdir()  # incomplete: no manifest, never counted

    would = backup_module.run(FakeModule(check_mode=True, diff=True, state="pruned", dest=str(server["dest"]), keep=2))
    assert would["changed"] is True
    assert (would["removed"], would["kept"]) == (["20260101"], ["20260301", "20260201"])
    assert would["diff"] == {"before": "20260101\n20260201\n20260301\n", "after": "20260201\n20260301\n"}
    assert (server["dest"] / "20260101").exists()  # check mode removed nothing

    pruned = backup_module.run(FakeModule(state="pruned", dest=str(server["dest"]), keep=2))
    assert {key: pruned[key] for key in ("changed", "removed", "kept")} == {
        "changed": True, "removed": ["20260101"], "kept": ["20260301", "20260201"]}
    assert sorted(os.listdir(server["dest"])) == ["20260201", "20260301", "20260401"]
    again = backup_module.run(FakeModule(state="pruned", dest=str(server["dest"]), keep=2))
    assert again["changed"] is False and again["removed"] == []


def test_the_module_as_ansible_runs_it(server, tmp_path):
    """Through AnsibleModule (its argument spec, check mode, the JSON answer) as a task would run it."""

    def module(args: dict) -> dict:
        path = tmp_path / "args.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))
        proc = subprocess.run([sys.executable, str(REPO / "plugins/modules/mlflow_backup.py"), str(path)],
                              capture_output=True, text=True, check=False, env=env)
        return json.loads(proc.stdout)

    assert "missing: label" in module({"state": "backup", "env_file": server["env_file"],
                                       "dest": str(server["dest"])})["msg"]
    checked = module({"state": "backup", "env_file": server["env_file"], "dest": str(server["dest"]),
                      "label": "x", "_ansible_check_mode": True})
    assert checked["changed"] is True and not server["dest"].exists()
    done = module({"state": "backup", "env_file": server["env_file"], "dest": str(server["dest"]), "label": "x"})
    assert done["changed"] is True and Path(done["manifest"]).exists()


def test_a_uri_in_an_error_is_masked(server, monkeypatch):
    """A database error may quote the URI (and its password): the task's message shows a placeholder."""
    uri = "postgresql://mlflow:s3cret@db.example:5432/mlflow"
    Path(server["env_file"]).write_text(f'MLFLOW_BACKEND_STORE_URI="{uri}"\n')

    def unreachable(uris, dest, label, check=False, artifacts_dir=None):
        raise ConnectionError(f"could not connect to {uris['tracking']}")

    monkeypatch.setattr(backup_module, "backup", unreachable)
    with pytest.raises(Failed) as failed:
        take(server, "masked")
    assert str(failed.value) == "ConnectionError: could not connect to <tracking database URI>"
