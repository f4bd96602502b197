# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""The mlflow-oidc-auth plugin's database (tracking_server_auth: oidc): its schema, its groups, the groups'
experiment permissions, and the permissions of basic-auth users carried over when a server switches to it.

Shared by the mlflow_oidc_grants module. Everything goes through the plugin's own store
(mlflow_oidc_auth.sqlalchemy_store.SqlAlchemyStore, the code the server runs); check mode reads only.
Run with the Python of MLflow's virtual environment.
"""

from __future__ import annotations

import datetime
import os
import tempfile

from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_users import (
    Experiments,
    UsersError,
    sqlite_file_missing,
)

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
# The service account's token: issued for the plugin's longest term (a year), renewed a month before it ends.
TOKEN_NAME = "mlflow-ansible"  # noqa: S105 - the token's name, no secret
TOKEN_DAYS = 364
TOKEN_RENEW_DAYS = 30


def plugin_revisions(uri: str) -> tuple[str | None, str]:
    """The plugin database's alembic revision (None when it has none yet) and the installed plugin's head."""
    import sqlalchemy
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from mlflow_oidc_auth.db.utils import _get_alembic_config

    head = ScriptDirectory.from_config(_get_alembic_config(uri)).get_current_head()
    if sqlite_file_missing(uri):
        return None, head
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return revision, head


def open_plugin_store(uri: str):
    """The plugin's store on ``uri``; its init_db brings the database to the installed plugin's head."""
    from mlflow_oidc_auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(uri)
    return store


def sibling_uri(uri: str, database: str, sqlite_dir: str) -> str:
    """Another database on the server of ``uri`` (same user and options), or another SQLite file in sqlite_dir:
    where the basic-auth app keeps its users beside the backend (the auth_uri filter's rule)."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{sqlite_dir.rstrip('/')}/{database}.db"
    return url.set(database=database).render_as_string(hide_password=False)


def basic_auth_grants(uri: str) -> dict[str, dict[str, str]]:
    """Experiment permissions of the basic-auth database's users, {user: {experiment_id: permission}}; empty when that
    database does not exist or has no users. MLflow 3.17 keeps them as roles (role_permissions of resource type
    experiment, the experiment's id as the pattern, assigned through user_role_assignments); earlier releases in
    experiment_permissions. Both are read; a pattern that is not one experiment's id is not carried."""
    import sqlalchemy

    if sqlite_file_missing(uri):
        return {}
    queries = {
        "experiment_permissions": "SELECT u.username, p.experiment_id, p.permission FROM experiment_permissions p "
                                  "JOIN users u ON u.id = p.user_id",
        "role_permissions": "SELECT u.username, r.resource_pattern, r.permission FROM role_permissions r "
                            "JOIN user_role_assignments a ON a.role_id = r.role_id JOIN users u ON u.id = a.user_id "
                            "WHERE r.resource_type = 'experiment'",
    }
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    rows = []
    try:
        with engine.connect() as connection:
            inspector = sqlalchemy.inspect(connection)
            for table, query in queries.items():
                if inspector.has_table("users") and inspector.has_table(table):
                    rows += connection.execute(sqlalchemy.text(query)).fetchall()
    except sqlalchemy.exc.OperationalError:  # no such database on the server: nothing to carry over
        return {}
    finally:
        engine.dispose()
    grants: dict[str, dict[str, str]] = {}
    for username, experiment_id, permission in rows:
        if str(experiment_id).isdigit():
            grants.setdefault(username, {})[str(experiment_id)] = permission
    return grants


def _group_grants(store, group: str) -> dict[str, str]:
    if group not in store.get_groups():
        return {}
    return {str(p.experiment_id): p.permission for p in store.get_group_experiments(group)}


def settle(store, groups: list[str], grants: list[dict], experiments: Experiments, carried: dict, check: bool) -> dict:
    """Create the missing groups, set each group grant, carry basic-auth users' grants over to users the plugin
    does not know yet. ``store`` is None in check mode on a database that does not exist yet."""
    changes: list[str] = []
    known_groups = set(store.get_groups()) if store is not None else set()
    missing = [g for g in dict.fromkeys(groups + [grant["group"] for grant in grants if grant["state"] == "present"])
               if g not in known_groups]
    if missing:
        changes.extend(f"created group {g}" for g in missing)
        if not check:
            store.populate_groups(missing)
    before: dict[str, dict[str, str]] = {}
    after: dict[str, dict[str, str]] = {}
    for grant in grants:
        group, name = grant["group"], grant["experiment"]
        experiment_id = experiments.lookup(name)
        if experiment_id is None and grant["state"] == "present":
            changes.append(f"created experiment {name}")
            if not check:
                experiment_id = experiments.create(name)
        current = _group_grants(store, group) if store is not None else {}
        had = current.get(experiment_id) if experiment_id else None
        before.setdefault(group, {})[name] = had or "-"
        if grant["state"] == "absent":
            if had is not None:
                changes.append(f"revoked {group} on {name}")
                if not check:
                    store.delete_group_experiment_permission(group, experiment_id)
            after.setdefault(group, {})[name] = "-"
            continue
        want = grant["permission"]
        if had != want:
            changes.append(f"{want} on {name} for group {group}")
            if not check:
                if had is None:
                    store.create_group_experiment_permission(group, experiment_id, want)
                else:
                    store.update_group_experiment_permission(group, experiment_id, want)
        after.setdefault(group, {})[name] = want
    carried_users: list[str] = []
    for username in sorted(carried):
        if store is not None and store.has_user(username):
            continue  # the plugin knows this user: its own grants stand
        carried_users.append(username)
        count = len(carried[username])
        changes.append(f"carried over {username} with {count} experiment permission(s) from basic auth")
        if not check:
            store.create_user(username, username, False)
            for experiment_id, permission in sorted(carried[username].items()):
                store.create_experiment_permission(experiment_id, username, permission)
    return {"changes": changes, "before": before, "after": after, "carried": carried_users}


def uri_from_env(env: dict, variable: str, path: str) -> str:
    uri = env.get(variable)
    if not uri:
        raise UsersError(f"{variable} is not set in {path}")
    return uri


def _write_secret(path: str, value: str) -> None:
    """Write a root-only file atomically (0600 before the secret is in it)."""
    directory = os.path.dirname(path) or "."
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".token-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def settle_service_account(store, name: str, token_file: str, check: bool) -> list[str]:
    """An admin service account of the plugin (basic auth with an access token the plugin issued) for the
    deploy's own calls (the canary), its live token in a root-only file on the host. The token is renewed when
    the file is missing, no longer authenticates, or ends within a month; it is never returned or logged."""
    if store is None:  # check mode on a database that does not exist yet
        return [f"created service account {name}", f"new token of {name} in {token_file}"]
    changes = []
    if not store.has_user(name):
        changes.append(f"created service account {name}")
        if check:
            return changes + [f"new token of {name} in {token_file}"]
        store.create_user(name, name, True, True)
    token = ""
    if os.path.exists(token_file):
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    utc = datetime.timezone.utc  # noqa: UP017 - datetime.UTC is Python 3.11's: module_utils may run on older Pythons
    now = datetime.datetime.now(utc)
    ends = [t.expires_at for t in store.list_user_tokens(name) if t.name == TOKEN_NAME and t.expires_at]
    ends = [e if e.tzinfo else e.replace(tzinfo=utc) for e in ends]
    live = bool(token) and store.authenticate_user(name, token) and any(
        e - now > datetime.timedelta(days=TOKEN_RENEW_DAYS) for e in ends)
    if not live:
        changes.append(f"new token of {name} in {token_file}")
        if not check:
            ends_at = now + datetime.timedelta(days=TOKEN_DAYS)
            issued = store.replace_user_token(name, TOKEN_NAME, ends_at, "mlflow-ansible")
            _write_secret(token_file, issued[1])  # (record, plaintext, replaced)
    return changes
