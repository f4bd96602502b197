# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Back up and restore MLflow's databases (tracking and auth) before an upgrade, and prune old backups.

The mlflow_backup module's code. Runs with the Python of an MLflow venv (SQLAlchemy and the
database driver). URIs come from the server's environment file and basic_auth.ini, never from
the task's arguments; passwords reach pg_dump/mariadb-dump through a private 0600 file in a
0700 directory.

PostgreSQL: pg_dump's custom format (restore: every table dropped, then pg_restore in one
transaction). MySQL/MariaDB: mariadb-dump --single-transaction (restore: every table
dropped, then the dump replayed). SQLite: SQLite's online backup API.

Each backup is a directory DEST/LABEL holding one dump per database and manifest.json (written
last, so a directory without it is an incomplete backup, never counted as one): the label, when
it was taken, and per database its dialect, alembic revision, file, size and sha256.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile

from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_schema import (
    AUTH_REVISION_TABLES,
    auth_database_uri,
    read_env_file,
    read_revision,
)

MANIFEST = "manifest.json"
REVISION_TABLES = {"tracking": ("alembic_version",), "auth": AUTH_REVISION_TABLES}
# The client tools each dialect's backup and restore run.
TOOLS = {"postgresql": ("pg_dump", "pg_restore"), "mysql": ("mariadb-dump", "mariadb")}
SUFFIXES = {"sqlite": "sqlite", "postgresql": "pgdump", "mysql": "sql"}


class BackupError(Exception):
    """A backup or restore that cannot go on (the message names no secret)."""


def database_uris(env_file: str, variable: str, auth_config: str | None) -> dict[str, str]:
    """{"tracking": uri, "auth": uri}: the databases an MLflow upgrade may migrate."""
    uris = {}
    uri = read_env_file(env_file).get(variable)
    if uri:
        uris["tracking"] = uri
    if auth_config:
        uris["auth"] = auth_database_uri(auth_config)
    return uris


def mask(message: str, uris: dict[str, str]) -> str:
    """message without the URIs (they may hold a password)."""
    for name, uri in uris.items():
        message = message.replace(uri, f"<{name} database URI>")
    return message


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


def dialect(uri: str) -> str:
    import sqlalchemy

    return sqlalchemy.engine.make_url(uri).get_backend_name()


def require_tools(backend: str, which: int) -> None:
    """Fail before anything is written when the dump (0) or restore (1) tool is not installed."""
    if backend not in SUFFIXES:
        raise BackupError(f"no backup method for {backend} databases")
    if backend in TOOLS and shutil.which(TOOLS[backend][which]) is None:
        raise BackupError(f"{TOOLS[backend][which]} is not installed (needed for the {backend} database)")


@contextlib.contextmanager
def private_umask():
    """Files and directories created meanwhile are the owner's only (restored afterwards: a module may
    run in a long-lived interpreter)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


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


def run_tool(argv: list[str], env: dict[str, str], stdin=None, stdout=None) -> None:
    result = subprocess.run(  # noqa: S603 - fixed tool names, arguments built here
        argv,
        env={**os.environ, **env},
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(
            f"{argv[0]} failed (exit {result.returncode}): {result.stderr.decode(errors='replace')[-1500:]}"
        )


def dump(name: str, uri: str, directory: str) -> dict:
    import sqlalchemy

    url = sqlalchemy.engine.make_url(uri)
    backend = url.get_backend_name()
    entry = {"database": name, "dialect": backend, "revision": revision(uri, name)}
    path = os.path.join(directory, f"{name}.{SUFFIXES[backend]}")
    if backend == "sqlite":
        source = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True)
        target = sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    elif backend == "postgresql":
        with client_env(url) as (env, extra):
            run_tool(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", path, *extra], env)
    else:
        with client_env(url) as (env, extra), open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
            run_tool(
                ["mariadb-dump", *extra, "--single-transaction", "--routines", "--no-tablespaces", url.database],
                env,
                stdout=out,
            )
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
                run_tool(
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
                    run_tool(["mariadb", *extra, url.database], env, stdin=source_sql)
    after = revision(uri, entry["database"])
    if after != entry["revision"]:
        raise BackupError(f"{entry['database']} is at {after} after the restore, expected {entry['revision']}")
    return {"database": entry["database"], "revision": after}


def complete_backups(dest: str) -> list[str]:
    """The labels of the complete backups in dest (those with a manifest), newest (highest label) first."""
    if not os.path.isdir(dest):
        return []
    return sorted((entry for entry in os.listdir(dest) if os.path.exists(os.path.join(dest, entry, MANIFEST))),
                  reverse=True)


def backup(uris: dict[str, str], dest: str, label: str, check: bool = False) -> dict:
    """Dump every database of uris into dest/label, then write its manifest. With check, read each
    database's revision and say what would be dumped, writing nothing."""
    if not label or label in (".", "..") or os.sep in label:
        raise BackupError(f"label {label!r} must name one directory under dest")
    directory = os.path.join(dest, label)
    path = os.path.join(directory, MANIFEST)
    if os.path.lexists(directory):
        raise BackupError(f"{directory} exists already: give the backup a new label")
    if not uris:
        raise BackupError("no database to back up (no backend store URI, no auth_config)")
    for uri in uris.values():
        require_tools(dialect(uri), 0)
    if check:
        planned = [{"database": name, "dialect": dialect(uri), "revision": revision(uri, name),
                    "file": f"{name}.{SUFFIXES[dialect(uri)]}"} for name, uri in uris.items()]
        return {"label": label, "databases": planned, "manifest": path}
    with private_umask():
        os.makedirs(dest, mode=0o700, exist_ok=True)
        os.makedirs(directory, mode=0o700)
        try:
            entries = [dump(name, uri, directory) for name, uri in uris.items()]
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # no half backup that looks complete
            raise
        manifest = {
            "label": label,
            # datetime.UTC is Python 3.11's: module_utils may run on older Pythons.
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
            "databases": entries,
        }
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
    return {**manifest, "manifest": path}


def read_manifest(manifest_path: str, uris: dict[str, str]) -> dict:
    """The manifest, once every dump it lists is checked against its sha256 and has a URI to go to."""
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    directory = os.path.dirname(manifest_path)
    for entry in manifest["databases"]:
        if entry["database"] not in uris:
            raise BackupError(f"no URI configured for the {entry['database']} database")
        path = os.path.join(directory, entry["file"])
        if not os.path.exists(path) or sha256(path) != entry["sha256"]:
            raise BackupError(f"{path} does not match the sha256 recorded at backup time")
        require_tools(dialect(uris[entry["database"]]), 1)
    return manifest


def restore(uris: dict[str, str], manifest_path: str, check: bool = False) -> dict:
    """Put every database of the manifest back as it was backed up (every dump is verified first, so a
    changed backup touches nothing). With check, read the current revisions and write nothing."""
    manifest = read_manifest(manifest_path, uris)
    directory = os.path.dirname(manifest_path)
    before = {entry["database"]: revision(uris[entry["database"]], entry["database"])
              for entry in manifest["databases"]}
    if check:
        restored = [{"database": entry["database"], "revision": entry["revision"]} for entry in manifest["databases"]]
    else:
        restored = [restore_one(entry, uris[entry["database"]], directory) for entry in manifest["databases"]]
    return {"label": manifest["label"], "manifest": manifest_path, "before": before, "restored": restored}


def prune(dest: str, keep: int, check: bool = False) -> dict:
    """Remove all but the keep newest complete backups (incomplete ones are never counted nor removed)."""
    complete = complete_backups(dest)
    removed = complete[keep:]
    if not check:
        for label in removed:
            shutil.rmtree(os.path.join(dest, label))
    return {"removed": removed, "kept": complete[:keep]}
