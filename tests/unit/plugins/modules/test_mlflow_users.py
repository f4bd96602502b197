"""The mlflow_users module on a real SQLite auth database made by MLflow's own auth store, and a real backend.

Every assertion reads the databases back through MLflow's stores (the code the server runs): users
created, passwords that authenticate, admin flags, experiment permissions; check mode reports and
writes nothing; no password ever reaches the result or the diff.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from module_loader import load_module

users_module = load_module("mlflow_users")

READER_PW = "reader-Pa55word-2024"
NEW_PW = "reader-NEW-Pa55word-2025"
BOSS_PW = "boss-Pa55word-2024-xyz"


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, users, check_mode=False, diff=True, **params):
        self.check_mode = check_mode
        self._diff = diff
        self.params = {"uri_variable": "MLFLOW_BACKEND_STORE_URI", "env_file": None, "artifact_root": None,
                       "users": [_user(u) for u in users], **params}

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)


def _user(user: dict) -> dict:
    """The defaults AnsibleModule fills in from the argument spec."""
    grants = [{"permission": None, "state": "present", **g} for g in user.get("permissions", [])]
    return {"password": None, "admin": False, "state": "present", **user, "permissions": grants}


@pytest.fixture
def dbs(tmp_path):
    """An auth database at MLflow's head (made by its auth store) and a backend with one experiment."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    auth_uri = f"sqlite:///{tmp_path / 'auth.db'}"
    backend_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    auth = AuthStore()
    auth.init_db(auth_uri)
    tracking = TrackingStore(backend_uri, "mlflow-artifacts:/")
    existing = tracking.create_experiment("existing")
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndatabase_uri = {auth_uri}\n")
    env_file = tmp_path / "mlflow.env"
    env_file.write_text(f'MLFLOW_BACKEND_STORE_URI="{backend_uri}"\n')
    yield {"auth": auth, "tracking": tracking, "existing": existing, "path": tmp_path,
           "params": {"auth_config": str(ini), "env_file": str(env_file), "artifact_root": "mlflow-artifacts:/"}}
    auth.engine.dispose()
    tracking.engine.dispose()


def _perm(auth, experiment_id, name):
    from mlflow.exceptions import MlflowException

    try:
        return auth.get_experiment_permission(experiment_id, name).permission
    except MlflowException:
        return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_password(result: dict) -> None:
    text = json.dumps(result)
    for secret in (READER_PW, NEW_PW, BOSS_PW):
        assert secret not in text


def test_create_then_nothing_to_do(dbs):
    users = [{"name": "reader", "password": READER_PW,
              "permissions": [{"experiment": "existing", "permission": "READ"},
                              {"experiment": "fresh", "permission": "EDIT"}]},
             {"name": "boss", "password": BOSS_PW, "admin": True}]
    done = users_module.run(FakeModule(users, **dbs["params"]))
    _no_password(done)
    assert done["changed"] is True
    assert done["changes"] == ["created reader", "READ on existing for reader", "created experiment fresh",
                               "EDIT on fresh for reader", "created boss"]
    assert done["revoked"] == [] and done["database"] == f"sqlite:///{dbs['path'] / 'auth.db'}"
    auth, tracking = dbs["auth"], dbs["tracking"]
    assert auth.authenticate_user("reader", READER_PW) and not auth.authenticate_user("reader", NEW_PW)
    assert auth.get_user("boss").is_admin is True and auth.get_user("reader").is_admin is False
    fresh = tracking.get_experiment_by_name("fresh")
    assert fresh.artifact_location == f"mlflow-artifacts:/{fresh.experiment_id}"
    assert _perm(auth, dbs["existing"], "reader") == "READ" and _perm(auth, fresh.experiment_id, "reader") == "EDIT"
    assert done["users"]["reader"] == {"admin": False, "permissions": {"existing": "READ", "fresh": "EDIT"}}
    assert "boss: admin=true" in done["diff"]["after"] and done["diff"]["before"] == ""

    again = users_module.run(FakeModule(users, **dbs["params"]))
    assert again["changed"] is False and again["changes"] == [] and again["revoked"] == []
    assert again["diff"]["before"] == again["diff"]["after"]


def test_password_admin_flag_and_permission_changes(dbs):
    auth = dbs["auth"]
    auth.create_user("reader", READER_PW)
    auth.create_experiment_permission(dbs["existing"], "reader", "READ")
    users = [{"name": "reader", "password": NEW_PW, "admin": True,
              "permissions": [{"experiment": "existing", "permission": "MANAGE"}]}]
    done = users_module.run(FakeModule(users, **dbs["params"]))
    _no_password(done)
    assert done["changes"] == ["password of reader", "admin flag of reader", "MANAGE on existing for reader"]
    assert done["revoked"] == ["reader"]
    assert auth.authenticate_user("reader", NEW_PW) and not auth.authenticate_user("reader", READER_PW)
    assert auth.get_user("reader").is_admin is True
    assert _perm(auth, dbs["existing"], "reader") == "MANAGE"
    assert "existing: READ" in done["diff"]["before"] and "existing: MANAGE" in done["diff"]["after"]
    assert "password" not in done["diff"]["before"] + done["diff"]["after"]


def test_permission_revoked_then_user_deleted(dbs):
    auth = dbs["auth"]
    auth.create_user("reader", READER_PW)
    auth.create_experiment_permission(dbs["existing"], "reader", "EDIT")
    revoke = [{"name": "reader", "password": READER_PW, "permissions": [{"experiment": "existing", "state": "absent"}]}]
    done = users_module.run(FakeModule(revoke, **dbs["params"]))
    assert done["changes"] == ["revoked EDIT on existing for reader"] and done["revoked"] == []
    assert _perm(auth, dbs["existing"], "reader") is None
    assert users_module.run(FakeModule(revoke, **dbs["params"]))["changed"] is False

    gone = [{"name": "reader", "state": "absent"}, {"name": "never-existed", "state": "absent"}]
    done = users_module.run(FakeModule(gone, **dbs["params"]))
    assert done["changes"] == ["deleted reader"] and done["revoked"] == ["reader"]
    assert not auth.has_user("reader")
    assert done["users"] == {} and "reader: admin=false" in done["diff"]["before"]
    assert users_module.run(FakeModule(gone, **dbs["params"]))["changed"] is False


def test_check_mode_reports_the_changes_and_writes_nothing(dbs):
    auth = dbs["auth"]
    auth.create_user("reader", READER_PW)
    auth.create_user("leaver", BOSS_PW)
    users = [{"name": "reader", "password": NEW_PW, "permissions": [{"experiment": "fresh", "permission": "READ"}]},
             {"name": "newbie", "password": BOSS_PW, "admin": True},
             {"name": "leaver", "state": "absent"}]
    before = {name: _digest(dbs["path"] / name) for name in ("auth.db", "mlflow.db")}
    checked = users_module.run(FakeModule(users, check_mode=True, **dbs["params"]))
    _no_password(checked)
    assert checked["changed"] is True
    assert checked["changes"] == ["password of reader", "created experiment fresh", "READ on fresh for reader",
                                  "created newbie", "deleted leaver"]
    assert checked["revoked"] == ["reader", "leaver"]
    assert {name: _digest(dbs["path"] / name) for name in ("auth.db", "mlflow.db")} == before
    assert auth.authenticate_user("reader", READER_PW) and not auth.has_user("newbie") and auth.has_user("leaver")
    assert dbs["tracking"].get_experiment_by_name("fresh") is None


def test_check_mode_before_the_auth_database_exists(tmp_path):
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n")
    users = [{"name": "reader", "password": READER_PW}]
    checked = users_module.run(FakeModule(users, check_mode=True, auth_config=str(ini)))
    assert checked["changed"] is True and checked["changes"] == ["created reader"]
    assert not (tmp_path / "auth.db").exists()
    with pytest.raises(Failed, match="the auth database is at revision \\(none\\)"):
        users_module.run(FakeModule(users, auth_config=str(ini)))
    assert not (tmp_path / "auth.db").exists()


def test_a_permission_needs_a_backend(dbs):
    params = dict(dbs["params"], env_file=None)
    users = [{"name": "reader", "password": READER_PW,
              "permissions": [{"experiment": "existing", "permission": "READ"}]}]
    with pytest.raises(Failed, match="needs a backend store"):
        users_module.run(FakeModule(users, **params))
    with pytest.raises(Failed, match="a password is required"):
        users_module.run(FakeModule([{"name": "nopass"}], **params))
