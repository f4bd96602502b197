"""The mlflow_gateway_kek module against a real MLflow tracking database (SQLite, MLflow's own store).

The secrets are created by MLflow's SqlAlchemyStore and read back with MLflow's own decryption, so
a re-wrap that MLflow could not read fails these tests.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "mlflow_gateway_kek", Path(__file__).resolve().parents[2] / "plugins" / "modules" / "mlflow_gateway_kek.py"
)
kek_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(kek_module)

OLD = "old-passphrase-" + "o" * 30
NEW = "new-passphrase-" + "n" * 30
VALUES = {"openai": "sk-openai-0123456789", "anthropic": "sk-ant-abcdefghijkl"}


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = {"previous_passphrases": [], "include_default_passphrase": True, **params}

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)


def _make_store(path: Path, passphrase: str | None, monkeypatch) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with monkeypatch.context() as patch:
        if passphrase is None:
            patch.delenv("MLFLOW_CRYPTO_KEK_PASSPHRASE", raising=False)
        else:
            patch.setenv("MLFLOW_CRYPTO_KEK_PASSPHRASE", passphrase)
        store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
        for name, value in VALUES.items():
            store.create_gateway_secret(secret_name=name, secret_value={"api_key": value}, provider="openai")
        store.engine.dispose()


@pytest.fixture(scope="module")
def default_db(tmp_path_factory) -> Path:
    """Secrets created by a server without MLFLOW_CRYPTO_KEK_PASSPHRASE (MLflow's development passphrase)."""
    path = tmp_path_factory.mktemp("kek") / "default.db"
    with pytest.MonkeyPatch.context() as patch:
        _make_store(path, None, patch)
    return path


@pytest.fixture
def db(default_db, tmp_path) -> Path:
    copy = tmp_path / "mlflow.db"
    shutil.copy(default_db, copy)
    return copy


def _rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT secret_id, secret_name, encrypted_value, wrapped_dek, kek_version FROM secrets ORDER BY secret_name"
        ).fetchall()


def _decrypted(path: Path, passphrase: str, version: int) -> dict[str, str]:
    from mlflow.utils.crypto import KEKManager, _decrypt_secret

    manager = KEKManager(passphrase=passphrase, kek_version=version)
    return {
        name: _decrypt_secret(value, dek, manager, secret_id=secret_id, secret_name=name)["api_key"]
        for secret_id, name, value, dek, _ in _rows(path)
    }


def _default_passphrase() -> str:
    from mlflow.utils.crypto import DEFAULT_KEK_PASSPHRASE

    return DEFAULT_KEK_PASSPHRASE


def _run(path: Path, passphrase: str = NEW, **params):
    return kek_module.run(FakeModule(backend_store_uri=f"sqlite:///{path}", passphrase=passphrase, **params))


def test_secrets_of_the_default_passphrase_are_rewrapped_once(db):
    result = _run(db)
    assert (result["changed"], result["secrets"], result["rewrapped"], result["kek_version"]) == (True, 2, 2, 2)
    assert _decrypted(db, NEW, 2) == VALUES
    with pytest.raises(Exception, match="Failed to decrypt secret"):
        _decrypted(db, _default_passphrase(), 1)
    again = _run(db)
    assert (again["changed"], again["rewrapped"], again["kek_version"]) == (False, 0, 2)


def test_check_mode_reports_and_writes_nothing(db):
    before = _rows(db)
    result = kek_module.run(FakeModule(check_mode=True, backend_store_uri=f"sqlite:///{db}", passphrase=NEW))
    assert (result["changed"], result["rewrapped"], result["kek_version"]) == (True, 2, 2)
    assert "2 of 2 secrets" in result["diff"]["before"]
    assert _rows(db) == before


def test_a_rotation_moves_every_secret_to_the_next_version(db):
    _run(db, passphrase=OLD)
    rotated = _run(db, passphrase=NEW, previous_passphrases=[OLD])
    assert (rotated["changed"], rotated["rewrapped"], rotated["kek_version"]) == (True, 2, 3)
    assert _decrypted(db, NEW, 3) == VALUES
    with pytest.raises(Exception, match="Failed to decrypt secret"):
        _decrypted(db, OLD, 2)


def test_the_encrypted_values_are_not_rewritten(db):
    values = [row[2] for row in _rows(db)]
    _run(db)
    assert [row[2] for row in _rows(db)] == values


def test_without_the_old_passphrase_nothing_changes(db):
    _run(db, passphrase=OLD)
    before = _rows(db)
    with pytest.raises(Failed, match=r"anthropic \(kek_version 2\).*nothing was changed"):
        _run(db, passphrase=NEW)
    assert _rows(db) == before
    # The development passphrase is no key to secrets wrapped with another one either.
    with pytest.raises(Failed):
        _run(db, passphrase=NEW, previous_passphrases=["x" * 40])


def test_the_default_passphrase_is_tried_only_when_asked(db):
    with pytest.raises(Failed, match="wrapped with a passphrase not given"):
        _run(db, include_default_passphrase=False)


def test_a_database_not_migrated_yet_has_nothing_to_wrap(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = _run(empty)
    assert (result["changed"], result["secrets"], result["kek_version"]) == (False, 0, 1)


def test_a_short_passphrase_is_refused_by_name(db):
    with pytest.raises(Failed, match="passphrase: at least 32 characters"):
        _run(db, passphrase="short")
