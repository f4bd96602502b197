#!/usr/bin/env python3
"""Back up and restore MLflow's databases (tracking and auth) before an upgrade.

Run as root with the Python of an MLflow venv (it needs SQLAlchemy). URIs come from
the server's environment file and basic_auth.ini, never from the command line;
passwords reach pg_dump/mariadb-dump through a private 0600 file in a 0700 directory.

    mlflow_backup.py --env-file /etc/mlflow/mlflow.env --auth-config /etc/mlflow/basic_auth.ini \\
        backup --dest /var/backups/mlflow --label 20261122T120000-3.17.2
    mlflow_backup.py --env-file ... --auth-config ... restore --manifest DIR/LABEL/manifest.json
    mlflow_backup.py prune --dest /var/backups/mlflow --keep 5

PostgreSQL: pg_dump's custom format (restore: every table dropped, then pg_restore in one
transaction). MySQL/MariaDB: mariadb-dump --single-transaction (restore: every table
dropped, then the dump replayed). SQLite: SQLite's online backup API.
Each command prints one JSON object; a failure prints {"error": ...} and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

# Installed side by side in the same libexec directory (the script's own directory is on sys.path).
from mlflow_schema import AUTH_REVISION_TABLES, auth_database_uri, read_env_file, read_revision

MANIFEST = "manifest.json"
REVISION_TABLES = {"tracking": ("alembic_version",), "auth": AUTH_REVISION_TABLES}


def database_uris(env_file: str, variable: str, auth_config: str | None) -> dict[str, str]:
    """{"tracking": uri, "auth": uri}: the databases an MLflow upgrade may migrate."""
    uris = {}
    uri = read_env_file(env_file).get(variable)
    if uri:
        uris["tracking"] = uri
    if auth_config:
        uris["auth"] = auth_database_uri(auth_config)
    return uris


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def revision(uri: str, database: str) -> str | None:
    """The alembic revision of the tracking or auth database (MLflow 2's auth app used alembic_version)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return read_revision(connection, REVISION_TABLES[database])
    finally:
        engine.dispose()


@contextlib.contextmanager
def client_env(url):
    """Environment and extra arguments for pg_dump/pg_restore or mariadb-dump/mariadb."""
    with tempfile.TemporaryDirectory(prefix="mlflow-backup-") as private:
        os.chmod(private, 0o700)
        query = dict(url.query)
        if url.get_backend_name() == "postgresql":
            env = {"PGDATABASE": url.database or "", "PGUSER": url.username or ""}
            host = query.get("host") or url.host or ""
            if host:
                env["PGHOST"] = host
            if url.port:
                env["PGPORT"] = str(url.port)
            if query.get("sslmode"):
                env["PGSSLMODE"] = query["sslmode"]
            if url.password is not None:
                passfile = os.path.join(private, "pgpass")
                escaped = str(url.password).replace("\\", "\\\\").replace(":", "\\:")
                with open(os.open(passfile, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
                    handle.write(f"*:*:*:*:{escaped}\n")
                env["PGPASSFILE"] = passfile
            yield env, []
            return
        options = os.path.join(private, "my.cnf")
        lines = ["[client]", f"user={url.username or ''}"]
        if url.password is not None:
            lines.append(f'password="{url.password}"')
        if query.get("unix_socket"):
            lines.append(f"socket={query['unix_socket']}")
        else:
            lines += [f"host={url.host or 'localhost'}", f"port={url.port or 3306}", "protocol=TCP"]
        tls = query.get("ssl_verify_cert") is not None
        lines.append("ssl" if tls else "skip-ssl")
        with open(os.open(options, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        yield {}, [f"--defaults-extra-file={options}"]


def run(argv: list[str], env: dict[str, str], stdin=None, stdout=None) -> None:
    result = subprocess.run(  # noqa: S603 - fixed tool names, arguments built here
        argv,
        env={**os.environ, **env},
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed (exit {result.returncode}): {result.stderr.decode(errors='replace')[-1500:]}"
        )


def dump(name: str, uri: str, directory: str) -> dict:
    import sqlalchemy

    url = sqlalchemy.engine.make_url(uri)
    backend = url.get_backend_name()
    entry = {"database": name, "dialect": backend, "revision": revision(uri, name)}
    if backend == "sqlite":
        path = os.path.join(directory, f"{name}.sqlite")
        source = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True)
        target = sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    elif backend == "postgresql":
        path = os.path.join(directory, f"{name}.pgdump")
        with client_env(url) as (env, extra):
            run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", path, *extra], env)
    elif backend == "mysql":
        path = os.path.join(directory, f"{name}.sql")
        with client_env(url) as (env, extra), open(path, "wb") as out:
            run(
                ["mariadb-dump", *extra, "--single-transaction", "--routines", "--no-tablespaces", url.database],
                env,
                stdout=out,
            )
    else:
        raise RuntimeError(f"no backup method for {backend} databases")
    os.chmod(path, 0o600)
    entry.update(file=os.path.basename(path), bytes=os.path.getsize(path), sha256=sha256(path))
    return entry


def drop_all_tables(uri: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        metadata = sqlalchemy.MetaData()
        metadata.reflect(bind=engine)
        with engine.begin() as connection:
            if engine.dialect.name == "mysql":
                connection.execute(sqlalchemy.text("SET FOREIGN_KEY_CHECKS = 0"))
            metadata.drop_all(bind=connection)
    finally:
        engine.dispose()


def restore_one(entry: dict, uri: str, directory: str) -> dict:
    import sqlalchemy

    path = os.path.join(directory, entry["file"])
    if sha256(path) != entry["sha256"]:
        raise RuntimeError(f"{path} does not match the sha256 recorded at backup time")
    url = sqlalchemy.engine.make_url(uri)
    backend = url.get_backend_name()
    if backend == "sqlite":
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(url.database)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    else:
        # Tables a newer MLflow added are not in the dump: drop everything, then replay.
        drop_all_tables(uri)
        with client_env(url) as (env, extra):
            if backend == "postgresql":
                run(
                    [
                        "pg_restore",
                        "--clean",
                        "--if-exists",
                        "--no-owner",
                        "--no-privileges",
                        "--single-transaction",
                        "--exit-on-error",
                        "--dbname",
                        env.get("PGDATABASE", ""),
                        *extra,
                        path,
                    ],
                    env,
                )
            else:
                with open(path, "rb") as source_sql:
                    run(["mariadb", *extra, url.database], env, stdin=source_sql)
    after = revision(uri, entry["database"])
    if after != entry["revision"]:
        raise RuntimeError(f"{entry['database']} is at {after} after the restore, expected {entry['revision']}")
    return {"database": entry["database"], "revision": after}


def backup(uris: dict[str, str], dest: str, label: str) -> dict:
    os.makedirs(dest, mode=0o700, exist_ok=True)
    directory = os.path.join(dest, label)
    os.makedirs(directory, mode=0o700)
    try:
        entries = [dump(name, uri, directory) for name, uri in uris.items()]
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # no half backup that looks complete
        raise
    manifest = {
        "label": label,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "databases": entries,
    }
    path = os.path.join(directory, MANIFEST)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
    return {**manifest, "manifest": path}


def restore(uris: dict[str, str], manifest_path: str) -> dict:
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    directory = os.path.dirname(manifest_path)
    restored = []
    for entry in manifest["databases"]:
        if entry["database"] not in uris:
            raise RuntimeError(f"no URI configured for the {entry['database']} database")
        restored.append(restore_one(entry, uris[entry["database"]], directory))
    return {"label": manifest["label"], "restored": restored}


def prune(dest: str, keep: int) -> dict:
    if not os.path.isdir(dest):
        return {"removed": []}
    complete = sorted(
        (entry for entry in os.listdir(dest) if os.path.exists(os.path.join(dest, entry, MANIFEST))), reverse=True
    )
    removed = complete[keep:]
    for label in removed:
        shutil.rmtree(os.path.join(dest, label))
    return {"removed": removed, "kept": complete[:keep]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", help="the server's environment file (backend store URI)")
    parser.add_argument("--variable", default="MLFLOW_BACKEND_STORE_URI")
    parser.add_argument("--auth-config", help="basic_auth.ini (the auth database), when basic auth is on")
    commands = parser.add_subparsers(dest="command", required=True)
    backup_parser = commands.add_parser("backup")
    backup_parser.add_argument("--dest", required=True)
    backup_parser.add_argument("--label", required=True)
    restore_parser = commands.add_parser("restore")
    restore_parser.add_argument("--manifest", required=True)
    prune_parser = commands.add_parser("prune")
    prune_parser.add_argument("--dest", required=True)
    prune_parser.add_argument("--keep", type=int, required=True)
    args = parser.parse_args(argv)
    os.umask(0o077)
    uris: dict[str, str] = {}
    try:
        if args.command != "prune":
            uris = database_uris(args.env_file, args.variable, args.auth_config)
        if args.command == "backup":
            result = backup(uris, args.dest, args.label)
        elif args.command == "restore":
            result = restore(uris, args.manifest)
        else:
            result = prune(args.dest, args.keep)
    except Exception as exc:  # report for the play, secrets masked
        message = f"{type(exc).__name__}: {exc}"
        for uri in uris.values():
            message = message.replace(uri, "<database URI>")
        print(json.dumps({"error": message[:3000]}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
