# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Report or migrate the MLflow backend store schema, explicitly.

Shared by the mlflow_schema module (the deploy's and the upgrade's calls, in check mode too) and
installed on the VM as the unit's start guard (``check``, run by systemd without Ansible), where
the mlflow_backup module's code (module_utils/mlflow_backup.py) imports it.

Run with the Python of the MLflow venv. The backend store URI is read from the
server's environment file (root-only), so it never appears on a command line.

    mlflow_schema.py --env-file /etc/mlflow/mlflow.env status
    mlflow_schema.py --env-file /etc/mlflow/mlflow.env upgrade
    mlflow_schema.py --head-file H --auth-head-file A --auth-config INI check
    mlflow_schema.py --env-file F [--database AUTH_DB] [--auth-config INI --auth-head-file A]
                     [--status --head-file H] prepare

`check` is the unit's start guard (ExecStartPre): it reads the URI from its own
environment (systemd loaded the EnvironmentFile) and exits 1 unless both databases are
exactly at the installed MLflow's revisions, so the server never migrates or creates a
schema by itself at startup.

`status` reads the head revision from --head-file when given (written at install
time), so it needs only SQLAlchemy and runs in a fraction of the time it takes to
import MLflow; it reports "behind" whenever the database's revision is not the head
(an empty database has none).

Prints one JSON object: the revision before and after, the head revision of the
installed MLflow, and the action taken (none, initialized, upgraded).
On PostgreSQL the migration holds an advisory lock (on MySQL a named lock,
GET_LOCK), so two hosts or two controllers never migrate at the same time;
SQLite serves a single host.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

# pg_advisory_lock key: any fixed 64-bit number, shared by every mlflow-ansible host.
ADVISORY_LOCK_KEY = 0x6D6C666C6F77  # "mlflow"
# MySQL GET_LOCK name, and how long a second migrator waits for the first (seconds).
MYSQL_LOCK_NAME = "mlflow-ansible-migration"
MYSQL_LOCK_TIMEOUT = 3600
REVISION_QUERIES = {
    "alembic_version": "SELECT version_num FROM alembic_version",
    "alembic_version_auth": "SELECT version_num FROM alembic_version_auth",
}


def read_env_file(path: str) -> dict[str, str]:
    """Parse the KEY="value" lines that the tracking_server role writes."""
    env: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            env[key.strip()] = value
    return env


def error_without_secrets(exc: Exception, secrets: list[str], limit: int = 2000) -> str:
    """A database error's message for the user, each secret in it (a URI may hold a password) shown as
    <database URI>; at most limit characters."""
    message = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        if secret:
            message = message.replace(secret, "<database URI>")
    return message[:limit]


def quick_state(engine, head: str) -> dict:
    """The database's revision without importing MLflow."""
    import sqlalchemy

    with engine.connect() as connection:
        if not sqlalchemy.inspect(connection).has_table("alembic_version"):
            current = None
        else:
            rows = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).fetchall()
            current = rows[0][0] if len(rows) == 1 else None
    return {"current": current, "head": head, "empty": current is None, "complete": current == head}


def schema_state(engine) -> dict:
    import sqlalchemy
    from mlflow.store.db import utils

    return {
        "current": utils._get_schema_version(engine),
        "head": utils._get_latest_schema_revision(),
        # As MLflow 3's _is_empty_database (MLflow 2 has none): alembic's own table does not count.
        "empty": all(t.startswith("alembic_") for t in sqlalchemy.inspect(engine).get_table_names()),
        "complete": utils._all_tables_exist(engine),
    }


def migrate(engine) -> str:
    from mlflow.store.db import utils

    state = schema_state(engine)
    if state["empty"] or not state["complete"]:
        utils._initialize_tables(engine)
        return "initialized"
    if state["current"] != state["head"]:
        utils._upgrade_db(engine)
        return "upgraded"
    return "none"


def ensure_database(engine, name: str, check: bool = False) -> dict:
    """Create database ``name`` on the backend's server (PostgreSQL or MySQL) when it is missing
    (with check, only say whether it would)."""
    import sqlalchemy

    dialect = engine.dialect.name
    if dialect not in ("postgresql", "mysql"):
        return {"database": name, "created": False, "skipped": f"no database server ({dialect})"}
    query = {
        "postgresql": "SELECT 1 FROM pg_database WHERE datname = :n",
        "mysql": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :n",
    }[dialect]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        exists = connection.execute(sqlalchemy.text(query), {"n": name}).first()
        if not exists and check:
            return {"database": name, "created": True, "check_mode": True}
        if not exists:
            quoted = engine.dialect.identifier_preparer.quote(name)
            suffix = " CHARACTER SET utf8mb4" if dialect == "mysql" else ""
            try:
                connection.execute(sqlalchemy.text(f"CREATE DATABASE {quoted}{suffix}"))
            except sqlalchemy.exc.DBAPIError:
                # Hosts sharing the server deploy in parallel: another one may have created it first.
                if not connection.execute(sqlalchemy.text(query), {"n": name}).first():
                    raise
                return {"database": name, "created": False, "created_by": "another host"}
    return {"database": name, "created": not exists}


def connection_limits(engine) -> dict | None:
    """The connections the database server allows its ordinary users: max_connections less those kept for
    superusers (PostgreSQL's superuser_reserved_connections, and reserved_connections from PostgreSQL 16);
    MySQL keeps its extra one beyond max_connections. None for SQLite."""
    import sqlalchemy

    dialect = engine.dialect.name
    if dialect == "postgresql":
        query = ("SELECT name, setting FROM pg_settings WHERE name IN "
                 "('max_connections', 'superuser_reserved_connections', 'reserved_connections')")
    elif dialect == "mysql":
        query = "SELECT 'max_connections', @@max_connections"
    else:
        return None
    with engine.connect() as connection:
        settings = {name: int(value) for name, value in connection.execute(sqlalchemy.text(query))}
    reserved = settings.get("superuser_reserved_connections", 0) + settings.get("reserved_connections", 0)
    return {"max_connections": settings["max_connections"], "reserved": reserved,
            "available": settings["max_connections"] - reserved}


@contextlib.contextmanager
def migration_lock(engine):
    """Hold a server-wide lock while migrating, so only one host or controller migrates."""
    import sqlalchemy

    dialect = engine.dialect.name
    if dialect not in ("postgresql", "mysql"):
        yield
        return
    with engine.connect() as lock:
        if dialect == "postgresql":
            lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        else:
            got = lock.execute(
                sqlalchemy.text("SELECT GET_LOCK(:n, :t)"), {"n": MYSQL_LOCK_NAME, "t": MYSQL_LOCK_TIMEOUT}
            ).scalar()
            if got != 1:
                raise RuntimeError(f"could not take the MySQL lock {MYSQL_LOCK_NAME} in {MYSQL_LOCK_TIMEOUT} s")
        try:
            yield
        finally:
            if dialect == "postgresql":
                lock.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            else:
                lock.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": MYSQL_LOCK_NAME})


# The auth app's revision table: MLflow 3 names it alembic_version_auth; MLflow 2 used
# alembic_version in the auth database (MLflow 3 moves it over when it migrates).
AUTH_REVISION_TABLES = ("alembic_version_auth", "alembic_version")


def read_revision(connection, tables) -> str | None:
    import sqlalchemy

    inspector = sqlalchemy.inspect(connection)
    for table in tables:
        if inspector.has_table(table):
            return connection.execute(sqlalchemy.text(REVISION_QUERIES[table])).scalar()
    return None


def auth_revision(engine):
    with engine.connect() as connection:
        return read_revision(connection, AUTH_REVISION_TABLES)


def auth_database_uri(auth_config: str) -> str:
    import configparser

    parser = configparser.ConfigParser()
    parser.read(auth_config)
    return parser["mlflow"]["database_uri"]


def unique_mysql_foreign_keys() -> None:
    """Give MySQL unique foreign-key names in the auth app's first migration.

    Its tables experiment_permissions and registered_model_permissions both name
    their foreign key fk_user_id; MySQL and MariaDB require names unique per
    database, so the migration fails there (mlflow/mlflow#9642, open). No later
    migration refers to the name, so the second table's key is renamed on the fly.
    """
    import sqlalchemy
    from sqlalchemy import event

    @event.listens_for(sqlalchemy.Table, "before_create")
    def _rename(table, connection, **_):
        if connection.dialect.name != "mysql" or table.name != "registered_model_permissions":
            return
        for constraint in table.constraints:
            if isinstance(constraint, sqlalchemy.ForeignKeyConstraint) and constraint.name == "fk_user_id":
                constraint.name = "fk_registered_model_permissions_user_id"


def upgrade_auth(auth_config: str, head_file: str | None, check: bool = False) -> dict:
    """Bring the basic-auth app's database to MLflow's head before the server starts.

    Every uvicorn worker otherwise migrates it at startup, and on MySQL concurrent
    workers collide ("Can't create table ... Duplicate key"). Runs under the same
    server-wide lock as the tracking migration.
    """

    import sqlalchemy

    engine = sqlalchemy.create_engine(auth_database_uri(auth_config), poolclass=sqlalchemy.pool.NullPool)
    head = read_head(head_file)
    try:
        before = auth_revision(engine)
        if head is not None and before == head:  # current: no need to import MLflow
            return {"before": before, "after": before, "head": head, "action": "none"}
        if check:
            head = head or installed_head("alembic_version_auth")
            action = "none" if before == head else "upgraded"
            return {"before": before, "after": head, "head": head, "action": action, "check_mode": True}
        from mlflow.server.auth.db import utils

        unique_mysql_foreign_keys()
        with migration_lock(engine):
            utils.migrate_if_needed(engine, "head")
        after = auth_revision(engine)
    finally:
        engine.dispose()
    return {"before": before, "after": after, "head": head, "action": "none" if before == after else "upgraded"}


def auth_status(auth_config: str, head_file: str | None) -> dict:
    """The auth database's revision against the head (read from head_file, else asked from MLflow),
    without migrating it."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(auth_database_uri(auth_config), poolclass=sqlalchemy.pool.NullPool)
    try:
        before = auth_revision(engine)
    finally:
        engine.dispose()
    head = read_head(head_file) or installed_head("alembic_version_auth")
    return {"before": before, "after": before, "head": head, "behind": before != head, "action": "none"}


def read_head(path: str | None) -> str | None:
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    return None


def installed_head(table: str) -> str:
    if table == "alembic_version":
        from mlflow.store.db.utils import _get_latest_schema_revision

        return _get_latest_schema_revision()
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_current_head()


def check(variable: str, head_file: str, auth_config: str | None, auth_head_file: str | None) -> list[str]:
    """What stops this MLflow from starting without migrating something itself (empty: nothing)."""
    import sqlalchemy

    problems = []
    targets = []
    uri = os.environ.get(variable)
    if uri:
        targets.append(("backend store", uri, "alembic_version", read_head(head_file)))
    if auth_config:
        targets.append(
            ("auth database", auth_database_uri(auth_config), "alembic_version_auth", read_head(auth_head_file))
        )
    for label, target_uri, table, head in targets:
        if head is None:  # a venv from before head files were recorded: ask MLflow (slower)
            head = installed_head(table)
        engine = sqlalchemy.create_engine(target_uri, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                current = read_revision(
                    connection, AUTH_REVISION_TABLES if table == "alembic_version_auth" else (table,)
                )
        finally:
            engine.dispose()
        if current != head:
            problems.append(
                f"{label} is at revision {current or '(none: no schema)'} but this MLflow expects {head}; "
                "refusing to start, as mlflow server would migrate it without a backup. "
                "Run the deploy (new database) or the upgrade playbook."
            )
    return problems


def _emit(result: dict) -> None:
    """The command line's answer: one JSON object on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variable", default="MLFLOW_BACKEND_STORE_URI")
    parser.add_argument("--env-file", help="the server's environment file (every action but check)")
    parser.add_argument("--head-file", help="file holding the head revision (status, upgrade-auth, check)")
    parser.add_argument("--auth-head-file", help="file holding the auth database's head revision (check)")
    parser.add_argument("--database", help="database name (ensure-database)")
    parser.add_argument("--auth-config", help="basic_auth.ini of the auth app (upgrade-auth)")
    parser.add_argument("--status", action="store_true", help="prepare: also read the backend schema's revision")
    parser.add_argument("--migrate", action="store_true",
                        help="prepare: also migrate the backend schema when it is behind (implies --status)")
    parser.add_argument(
        "action", choices=["status", "upgrade", "ensure-database", "upgrade-auth", "prepare", "check"]
    )
    args = parser.parse_args(argv)

    if args.action == "check":
        try:
            problems = check(args.variable, args.head_file, args.auth_config, args.auth_head_file)
        except Exception as exc:  # the database is unreachable: systemd retries the start
            message = f"{type(exc).__name__}: {exc}"
            if os.environ.get(args.variable):
                message = message.replace(os.environ[args.variable], "<backend store URI>")
            problems = [f"cannot read the schema revision: {message}"[:2000]]
        for problem in problems:
            sys.stderr.write(f"mlflow-ansible schema guard: {problem}\n")
        return 1 if problems else 0
    if not args.env_file:
        parser.error(f"--env-file is required for {args.action}")

    if args.action == "upgrade-auth":
        try:
            _emit(upgrade_auth(args.auth_config, args.head_file))
            return 0
        except Exception as exc:  # report any database error as JSON for the play
            _emit({"error": f"{type(exc).__name__}: {exc}"[:2000]})
            return 1

    uri = read_env_file(args.env_file).get(args.variable)
    if not uri:
        _emit({"error": f"{args.variable} is not set in {args.env_file}"})
        return 2

    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    if args.action == "prepare":
        try:
            _emit(prepare(engine, args.database, args.auth_config, args.auth_head_file, args.status,
                          args.head_file, args.migrate))
            return 0
        except Exception as exc:  # report any database error as JSON for the play
            _emit({"error": f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")[:2000]})
            return 1
        finally:
            engine.dispose()
    if args.action == "ensure-database":
        try:
            _emit(ensure_database(engine, args.database))
            return 0
        except Exception as exc:  # report any database error as JSON for the play
            _emit({"error": f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")})
            return 1
        finally:
            engine.dispose()
    try:
        result = schema_status(engine, args.action, args.head_file if args.action == "status" else None,
                               args.auth_config if args.action == "status" else None, args.auth_head_file)
    except Exception as exc:  # report any database error as JSON for the play
        _emit({"error": f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")})
        return 1
    finally:
        engine.dispose()
    _emit(result)
    return 0


def schema_status(engine, action: str, head_file: str | None, auth_config: str | None,
                  auth_head_file: str | None) -> dict:
    """The backend schema's revision against the installed MLflow's head (read from head_file when
    given), and the auth database's with auth_config; migrated first when action is upgrade."""
    import sqlalchemy

    head = read_head(head_file)
    before = quick_state(engine, head) if head else schema_state(engine)
    result = {"before": before["current"], "head": before["head"], "action": "none"}
    behind = before["empty"] or not before["complete"] or before["current"] != before["head"]
    result["behind"] = behind
    if auth_config:
        auth_engine = sqlalchemy.create_engine(auth_database_uri(auth_config), poolclass=sqlalchemy.pool.NullPool)
        try:
            result["auth_before"] = auth_revision(auth_engine)
        finally:
            auth_engine.dispose()
        result["auth_head"] = read_head(auth_head_file)
        result["auth_behind"] = result["auth_before"] != result["auth_head"]
    if action == "upgrade" and behind:
        with migration_lock(engine):  # migrate() re-reads the state: another host may have migrated meanwhile
            result["action"] = migrate(engine)
    result["after"] = (quick_state(engine, head) if head else schema_state(engine))["current"]
    return result


def prepare(engine, database: str | None = None, auth_config: str | None = None, auth_head_file: str | None = None,
            status: bool = False, head_file: str | None = None, migrate: bool = False, check: bool = False,
            auth_migrate: bool = True) -> dict:
    """In one process, what a deploy does before the server (re)starts: create the auth database when
    missing (database), bring it to MLflow's revision (auth_config, its head from auth_head_file),
    read the backend schema's revision (status, its head from head_file) and, with migrate, migrate it
    when it is behind (under the server-wide lock, so one host of many migrates). Without auth_migrate
    the auth database's revision is only read. With check, nothing changes: each part says what it
    would do."""
    result = {}
    if database:
        result["auth_database"] = ensure_database(engine, database, check)
    if auth_config and not auth_migrate:
        result["auth_schema"] = auth_status(auth_config, auth_head_file)
    elif auth_config:
        if check and result.get("auth_database", {}).get("check_mode"):  # no database yet to read
            head = read_head(auth_head_file)
            result["auth_schema"] = {"before": None, "after": head, "head": head, "action": "upgraded",
                                     "check_mode": True}
        else:
            result["auth_schema"] = upgrade_auth(auth_config, auth_head_file, check)
    if status or migrate:
        action = "upgrade" if migrate and not check else "status"
        result["status"] = schema_status(engine, action, head_file, None, None)
        if check and migrate and result["status"]["behind"]:
            would = "initialized" if result["status"]["before"] is None else "upgraded"
            result["status"].update(action=would, after=result["status"]["head"], check_mode=True)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
