#!/usr/bin/env python3
"""Report or migrate the MLflow backend store schema, explicitly.

Run with the Python of the MLflow venv. The backend store URI is read from the
server's environment file (root-only), so it never appears on a command line.

    mlflow_schema.py --env-file /etc/mlflow/mlflow.env status
    mlflow_schema.py --env-file /etc/mlflow/mlflow.env upgrade

`status` reads the head revision from --head-file when given (written at install
time), so it needs only SQLAlchemy and runs in a fraction of the time it takes to
import MLflow; it reports "behind" whenever the database's revision is not the head
(an empty database has none).

Prints one JSON object: the revision before and after, the head revision of the
installed MLflow, and the action taken (none, initialized, upgraded).
On PostgreSQL the migration holds an advisory lock, so two hosts or two
controllers never migrate at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# pg_advisory_lock key: any fixed 64-bit number, shared by every mlflow-ansible host.
ADVISORY_LOCK_KEY = 0x6D6C666C6F77  # "mlflow"


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
    from mlflow.store.db import utils

    return {
        "current": utils._get_schema_version(engine),
        "head": utils._get_latest_schema_revision(),
        "empty": utils._is_empty_database(engine),
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


def ensure_database(engine, name: str) -> dict:
    """Create database ``name`` on the backend's PostgreSQL server when it is missing."""
    import sqlalchemy

    if engine.dialect.name != "postgresql":
        return {"database": name, "created": False, "skipped": f"not PostgreSQL ({engine.dialect.name})"}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        query = sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :n")
        exists = connection.execute(query, {"n": name}).first()
        if not exists:
            quoted = engine.dialect.identifier_preparer.quote(name)
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {quoted}"))
    return {"database": name, "created": not exists}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variable", default="MLFLOW_BACKEND_STORE_URI")
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--head-file", help="file holding the head revision (status only)")
    parser.add_argument("--database", help="database name (ensure-database)")
    parser.add_argument("action", choices=["status", "upgrade", "ensure-database"])
    args = parser.parse_args(argv)

    uri = read_env_file(args.env_file).get(args.variable)
    if not uri:
        print(json.dumps({"error": f"{args.variable} is not set in {args.env_file}"}))
        return 2

    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    if args.action == "ensure-database":
        try:
            print(json.dumps(ensure_database(engine, args.database)))
            return 0
        except Exception as exc:  # report any database error as JSON for the play
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")}))
            return 1
        finally:
            engine.dispose()
    try:
        head = None
        if args.action == "status" and args.head_file and os.path.exists(args.head_file):
            with open(args.head_file, encoding="utf-8") as handle:
                head = handle.read().strip() or None
        before = quick_state(engine, head) if head else schema_state(engine)
        result = {"before": before["current"], "head": before["head"], "action": "none"}
        behind = before["empty"] or not before["complete"] or before["current"] != before["head"]
        result["behind"] = behind
        if args.action == "upgrade" and behind:
            if engine.dialect.name == "postgresql":
                with engine.connect() as lock:
                    lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
                    try:
                        result["action"] = migrate(engine)
                    finally:
                        lock.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            else:
                result["action"] = migrate(engine)
        result["after"] = (quick_state(engine, head) if head else schema_state(engine))["current"]
    except Exception as exc:  # report any database error as JSON for the play
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}".replace(uri, "<backend store URI>")}))
        return 1
    finally:
        engine.dispose()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
