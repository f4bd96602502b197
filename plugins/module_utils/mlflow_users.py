# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""MLflow basic-auth users and their experiment permissions, settled in the auth database itself.

Shared by the mlflow_users module. Users are read and written through MLflow's own auth store
(mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore, the code the server runs), so this works before
the server ever started, check mode is a pure read, and no password crosses HTTP. Run with the
Python of MLflow's virtual environment.

Experiments are named by name; their ids come from the backend store (read with one query, created
through MLflow's tracking store when missing, with the artifact root the server would give them).
"""

from __future__ import annotations

import os

from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_schema import (
    auth_database_uri as _auth_database_uri,
)

# What changed for a user that a server worker may still trust from its auth cache: MLflow drops a
# changed user from the cache of the one process that made the change only.
REVOKING = ("deleted ", "password of ", "admin flag of ")


class UsersError(Exception):
    pass


def auth_database_uri(auth_config: str) -> str:
    """``database_uri`` of basic_auth.ini, read as MLflow reads it (mlflow_schema's reader), or a clear error."""
    try:
        return _auth_database_uri(auth_config)
    except KeyError as exc:
        raise UsersError(f"{auth_config} has no [mlflow] database_uri") from exc


def database_identity(uri: str) -> str:
    """The database a URI names, without its credentials: how callers tell servers sharing one apart."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{url.database or ''}"
    host = url.host or url.query.get("host") or url.query.get("unix_socket") or ""
    return f"{url.get_backend_name()}://{host}:{url.port or ''}/{url.database or ''}"


def sqlite_file_missing(uri: str) -> bool:
    """A sqlite:/// URI whose file does not exist (connecting would create it)."""
    if not uri.startswith("sqlite:"):
        return False
    from sqlalchemy.engine import make_url

    path = make_url(uri).database or ""
    return path not in ("", ":memory:") and not os.path.exists(path)


def auth_revisions(uri: str) -> tuple[str | None, str]:
    """The auth database's alembic revision (None without one) and the installed MLflow's head."""
    import sqlalchemy
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_config

    head = ScriptDirectory.from_config(_get_alembic_config(uri)).get_current_head()
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            if not sqlalchemy.inspect(connection).has_table("alembic_version_auth"):
                return None, head
            rows = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version_auth")).fetchall()
    finally:
        engine.dispose()
    return (rows[0][0] if len(rows) == 1 else None), head


def open_auth_store(uri: str):
    """MLflow's auth store on ``uri``. Call only on a database at the installed head: init_db migrates otherwise."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(uri)
    return store


class Experiments:
    """Experiment ids by name from the backend store; missing experiments created through MLflow's tracking store."""

    def __init__(self, uri: str | None, artifact_root: str | None, unknown_ok: bool = False):
        self.uri = uri
        self.unknown_ok = unknown_ok
        self.artifact_root = artifact_root
        self._ids: dict[str, str | None] = {}
        self._engine = None
        self._store = None

    def lookup(self, name: str) -> str | None:
        if self.uri is None:
            if self.unknown_ok:
                return None
            raise UsersError(
                f"the permission on experiment {name!r} needs a backend store (this server has none: artifacts only)"
            )
        if name not in self._ids:
            import sqlalchemy

            if self._engine is None:
                self._engine = sqlalchemy.create_engine(self.uri, poolclass=sqlalchemy.pool.NullPool)
            with self._engine.connect() as connection:
                if not sqlalchemy.inspect(connection).has_table("experiments"):  # check mode on a new backend
                    self._ids[name] = None
                    return None
                columns = {c["name"] for c in sqlalchemy.inspect(connection).get_columns("experiments")}
                query = "SELECT experiment_id FROM experiments WHERE name = :name"
                if "workspace" in columns:  # names are unique per workspace; the server's is 'default'
                    query += " AND workspace = 'default'"
                row = connection.execute(sqlalchemy.text(query), {"name": name}).first()
            self._ids[name] = None if row is None else str(row[0])
        return self._ids[name]

    def create(self, name: str) -> str:
        if self._store is None:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            if not self.artifact_root:
                raise UsersError(f"experiment {name!r} is missing and no artifact_root is given to create it")
            self._store = SqlAlchemyStore(self.uri, self.artifact_root)
        self._ids[name] = str(self._store.create_experiment(name))
        return self._ids[name]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._store is not None:
            self._store.engine.dispose()


def _permission(store, experiment_id: str, username: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return store.get_experiment_permission(experiment_id, username).permission
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _user_state(store, name: str, grants: list[dict], experiments: Experiments) -> dict | None:
    """What the auth database holds for ``name``: admin flag and the permissions on the grants' experiments."""
    if store is None or not store.has_user(name):
        return None
    state = {"admin": bool(store.get_user(name).is_admin), "permissions": {}}
    for grant in grants:
        experiment_id = experiments.lookup(grant["experiment"])
        if experiment_id is not None:
            permission = _permission(store, experiment_id, name)
            if permission is not None:
                state["permissions"][grant["experiment"]] = permission
    return state


def settle_user(store, user: dict, experiments: Experiments, check: bool) -> tuple[list[str], dict | None, dict | None]:
    """Bring one user to ``user``; returns what changed (never a password) and the state before and after.

    ``store`` is None in check mode when the auth database is not settled yet (everything is to do).
    """
    name = user["name"]
    grants = [g for g in user.get("permissions") or [] if g.get("state", "present") == "present"]
    revokes = [g for g in user.get("permissions") or [] if g.get("state", "present") == "absent"]
    before = _user_state(store, name, grants + revokes, experiments)
    changes: list[str] = []
    if user.get("state", "present") == "absent":
        if before is not None:
            if not check:
                store.delete_user(name)
            changes.append(f"deleted {name}")
        return changes, before, None

    password = user["password"]
    admin = bool(user.get("admin", False))
    if before is None:
        if not check:
            store.create_user(name, password, is_admin=admin)
        changes.append(f"created {name}")
    else:
        if not store.authenticate_user(name, password):
            if not check:
                store.update_user(name, password=password)
            changes.append(f"password of {name}")
        if before["admin"] != admin:
            if not check:
                store.update_user(name, is_admin=admin)
            changes.append(f"admin flag of {name}")

    after = {"admin": admin, "permissions": dict(before["permissions"]) if before else {}}
    for grant in grants:
        experiment, wanted = grant["experiment"], grant["permission"]
        current = (before or {}).get("permissions", {}).get(experiment)
        if current == wanted:
            continue
        experiment_id = experiments.lookup(experiment)
        if experiment_id is None:
            changes.append(f"created experiment {experiment}")
            if not check:
                experiment_id = experiments.create(experiment)
        if not check:
            if current is None:
                store.create_experiment_permission(experiment_id, name, wanted)
            else:
                store.update_experiment_permission(experiment_id, name, wanted)
        after["permissions"][experiment] = wanted
        changes.append(f"{wanted} on {experiment} for {name}")
    for grant in revokes:
        experiment = grant["experiment"]
        if experiment in after["permissions"]:
            if not check:
                store.delete_experiment_permission(experiments.lookup(experiment), name)
            changes.append(f"revoked {after['permissions'].pop(experiment)} on {experiment} for {name}")
    return changes, before, after


def settle(store, users: list[dict], experiments: Experiments, check: bool) -> dict:
    """Every user of ``users`` in turn: the changes, the users whose old credentials a worker may still trust,
    and the state before and after (admin flag and permissions, no password)."""
    changes: list[str] = []
    revoked: list[str] = []
    before: dict = {}
    after: dict = {}
    for user in users:
        user_changes, user_before, user_after = settle_user(store, user, experiments, check)
        changes += user_changes
        if any(change.startswith(REVOKING) for change in user_changes):
            revoked.append(user["name"])
        if user_before is not None:
            before[user["name"]] = user_before
        if user_after is not None:
            after[user["name"]] = user_after
    return {"changes": changes, "revoked": revoked, "before": before, "after": after}
