# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Back up and restore MLflow's databases (tracking and auth) and its local artifacts, and prune old backups.

The mlflow_backup module's code, and the backup unit's (``mlflow_backup.py backup ...``, installed
on the VM beside mlflow_schema.py: one source for the upgrade's backups, the scheduled ones and
the backup action's). Runs with the Python of an MLflow venv (SQLAlchemy, the database driver,
google-cloud-storage and boto3 for a bucket destination). URIs come from the server's environment
file and basic_auth.ini, never from the task's arguments; passwords reach pg_dump/mariadb-dump
through a private 0600 file in a 0700 directory.

PostgreSQL: pg_dump's custom format (restore: every table dropped, then pg_restore in one
transaction). MySQL/MariaDB: mariadb-dump --single-transaction (restore: every table
dropped, then the dump replayed). SQLite: SQLite's online backup API.

Each backup is a directory DEST/LABEL holding one dump per database, artifacts.tar when the
artifacts are on the VM's disk, and manifest.json (written last, so a directory without it is an
incomplete backup, never counted as one): the label, when it was taken, the MLflow version that
served the data, per database its dialect, alembic revision, file, size and sha256, and the
artifacts' file, size and sha256. A bucket destination (gs://BUCKET/PREFIX, s3://BUCKET/PREFIX)
holds the same files under PREFIX/LABEL/, the manifest uploaded last.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile

try:
    from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_schema import (
        AUTH_REVISION_TABLES,
        auth_database_uri,
        read_env_file,
        read_revision,
    )
except ImportError:  # the backup unit: installed on the VM beside mlflow_schema.py
    from mlflow_schema import (  # type: ignore[no-redef]
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
ARTIFACTS = "artifacts.tar"
# The result of the backup unit's last successful run, in the local backup directory.
LAST_BACKUP = "last-backup.json"
BUCKET = re.compile(r"^(gs|s3)://([^/]+)/?(.*)$")


class BackupError(Exception):
    """A backup or restore that cannot go on (the message names no secret)."""


def database_uris(env_file: str | None, variable: str, auth_config: str | None) -> dict[str, str]:
    """{"tracking": uri, "auth": uri}: the databases an MLflow upgrade may migrate. Without env_file,
    the URI comes from this process's environment (the backup unit's EnvironmentFile)."""
    uris = {}
    uri = (read_env_file(env_file) if env_file else os.environ).get(variable)
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


def backup(uris: dict[str, str], dest: str, label: str, check: bool = False, artifacts_dir: str | None = None) -> dict:
    """Dump every database of uris (and archive artifacts_dir) into dest/label, then write its manifest.
    With check, read each database's revision and say what would be dumped, writing nothing."""
    if not label or label in (".", "..") or os.sep in label:
        raise BackupError(f"label {label!r} must name one directory under dest")
    directory = os.path.join(dest, label)
    path = os.path.join(directory, MANIFEST)
    if os.path.lexists(directory):
        raise BackupError(f"{directory} exists already: give the backup a new label")
    if not uris:
        raise BackupError("no database to back up (no backend store URI, no auth_config)")
    if artifacts_dir and not os.path.isdir(artifacts_dir):
        raise BackupError(f"the artifact directory {artifacts_dir} does not exist")
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
            artifacts = archive_artifacts(artifacts_dir, directory) if artifacts_dir else None
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # no half backup that looks complete
            raise
        manifest = {
            "label": label,
            # datetime.UTC is Python 3.11's: module_utils may run on older Pythons.
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
            "mlflow_version": installed_mlflow_version(),
            "databases": entries,
        }
        if artifacts:
            manifest["artifacts"] = artifacts
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
    return {**manifest, "manifest": path}


def read_manifest(manifest_path: str, uris: dict[str, str]) -> dict:
    """The manifest, once every dump it lists is checked against its sha256 and has a URI to go to."""
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    directory = os.path.dirname(manifest_path)
    for entry in manifest["databases"] + ([manifest["artifacts"]] if manifest.get("artifacts") else []):
        path = os.path.join(directory, entry["file"])
        if not os.path.exists(path) or sha256(path) != entry["sha256"]:
            raise BackupError(
                f"{path} does not match the sha256 recorded at backup time: the backup was changed or is "
                "incomplete; nothing was restored. Restore another backup (restore --from LABEL)"
            )
    for entry in manifest["databases"]:
        if entry["database"] not in uris:
            raise BackupError(f"no URI configured for the {entry['database']} database")
        require_tools(dialect(uris[entry["database"]]), 1)
    return manifest


def restore(uris: dict[str, str], manifest_path: str, check: bool = False, artifacts_dir: str | None = None) -> dict:
    """Put every database of the manifest back as it was backed up, and its artifacts into artifacts_dir
    (every file is verified first, so a changed backup touches nothing). With check, read the current
    revisions and write nothing."""
    manifest = read_manifest(manifest_path, uris)
    directory = os.path.dirname(manifest_path)
    if manifest.get("artifacts") and not artifacts_dir:
        raise BackupError("the backup holds local artifacts, but this server's artifacts are not on its disk")
    before = {entry["database"]: revision(uris[entry["database"]], entry["database"])
              for entry in manifest["databases"]}
    if check:
        restored = [{"database": entry["database"], "revision": entry["revision"]} for entry in manifest["databases"]]
    else:
        restored = [restore_one(entry, uris[entry["database"]], directory) for entry in manifest["databases"]]
        if manifest.get("artifacts"):
            restore_artifacts(os.path.join(directory, manifest["artifacts"]["file"]), artifacts_dir)
    result = {"label": manifest["label"], "manifest": manifest_path, "before": before, "restored": restored}
    if manifest.get("artifacts"):
        result["artifacts"] = artifacts_dir
    return result


def prune(dest: str, keep: int, check: bool = False) -> dict:
    """Remove all but the keep newest complete backups (incomplete ones are never counted nor removed)."""
    complete = complete_backups(dest)
    removed = complete[keep:]
    if not check:
        for label in removed:
            shutil.rmtree(os.path.join(dest, label))
    return {"removed": removed, "kept": complete[:keep]}


def installed_mlflow_version() -> str | None:
    """The MLflow version of the Python running this (the server's venv), without importing MLflow."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version("mlflow")
    except PackageNotFoundError:
        try:
            return version("mlflow-skinny")
        except PackageNotFoundError:
            return None


def version_key(text: str) -> tuple[int, ...]:
    """3.17.2 -> (3, 17, 2); a suffix (rc1, .dev0) is ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("rc")[0].split(".dev")[0])[:3])


def archive_artifacts(source: str, directory: str) -> dict:
    """source (the artifact directory) as an uncompressed tar in directory (artifacts are often compressed
    already); symbolic links are stored as links, never followed."""
    path = os.path.join(directory, ARTIFACTS)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle, \
            tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(os.listdir(source)):
            archive.add(os.path.join(source, entry), arcname=entry, recursive=True)
    return {"file": ARTIFACTS, "source": source, "bytes": os.path.getsize(path), "sha256": sha256(path)}


def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, once each is a file, a directory or a link that stays inside the archive's root."""
    members = archive.getmembers()
    for member in members:
        name = member.name
        if name.startswith("/") or ".." in name.split("/") or not (member.isfile() or member.isdir() or member.issym()):
            raise BackupError(f"the artifact archive holds {name!r}, which a restore does not write")
        if member.issym() and (member.linkname.startswith("/") or ".." in member.linkname.split("/")):
            raise BackupError(f"the artifact archive holds a link {name!r} pointing outside it")
    return members


def restore_artifacts(archive_path: str, dest: str) -> None:
    """Replace what dest holds with the archive's files, owned as dest is (the service user).

    The archive is unpacked into a hidden directory inside dest first (the same file system, even
    when dest is a mount point), then dest's other entries are removed and the unpacked ones moved in."""
    os.makedirs(dest, mode=0o750, exist_ok=True)
    info = os.stat(dest)
    staging = tempfile.mkdtemp(prefix=".mlflow-restore-", dir=dest)
    try:
        with tarfile.open(archive_path, mode="r:") as archive:
            members = _safe_members(archive)
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, members=members, filter="data")  # noqa: S202 - members checked
            else:  # pragma: no cover - Pythons without extraction filters
                archive.extractall(staging, members=members)  # noqa: S202 - members checked above
        for root, dirs, files in os.walk(staging):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), info.st_uid, info.st_gid)
        for entry in os.listdir(dest):
            path = os.path.join(dest, entry)
            if path == staging:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        for entry in os.listdir(staging):
            os.rename(os.path.join(staging, entry), os.path.join(dest, entry))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Bucket:
    """gs://BUCKET/PREFIX or s3://BUCKET/PREFIX, with the client libraries the MLflow venv has.

    The endpoints and credentials are the server's: STORAGE_EMULATOR_HOST and
    GOOGLE_APPLICATION_CREDENTIALS (else the VM's service account) for GCS, MLFLOW_S3_ENDPOINT_URL
    and the AWS_* variables for S3."""

    def __init__(self, url: str) -> None:
        match = BUCKET.match(url)
        if not match:
            raise BackupError(f"{url} is not gs://BUCKET/PREFIX or s3://BUCKET/PREFIX")
        self.scheme, self.name, prefix = match.groups()
        self.prefix = prefix.strip("/")
        if self.scheme == "gs":
            from google.cloud import storage

            self._gcs = storage.Client()
            self._bucket = self._gcs.bucket(self.name)
        else:
            import boto3

            self._s3 = boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    def url(self, *parts: str) -> str:
        return f"{self.scheme}://{self.name}/{self.key(*parts)}"

    def upload(self, path: str, key: str) -> None:
        if self.scheme == "gs":
            self._bucket.blob(key).upload_from_filename(path)
        else:
            self._s3.upload_file(path, self.name, key)

    def download(self, key: str, path: str) -> None:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            if self.scheme == "gs":
                self._bucket.blob(key).download_to_file(handle)
            else:
                self._s3.download_fileobj(self.name, key, handle)

    def keys(self, prefix: str) -> list[str]:
        if self.scheme == "gs":
            return [blob.name for blob in self._gcs.list_blobs(self.name, prefix=prefix)]
        found = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            if self.scheme == "gs":
                self._bucket.blob(key).delete()
            else:
                self._s3.delete_object(Bucket=self.name, Key=key)

    def complete_backups(self) -> list[str]:
        """The labels under the prefix with a manifest, newest first."""
        base = self.key() + "/" if self.prefix else ""
        labels = set()
        for key in self.keys(base):
            parts = key[len(base):].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST:
                labels.add(parts[0])
        return sorted(labels, reverse=True)

    def prune(self, keep: int) -> dict:
        complete = self.complete_backups()
        for label in complete[keep:]:
            self.delete(self.keys(self.key(label) + "/"))
        return {"removed": complete[keep:], "kept": complete[:keep]}


# The variables of the server's environment file a bucket client reads (endpoints, credentials).
BUCKET_ENV_PREFIXES = ("STORAGE_EMULATOR_HOST", "GOOGLE_", "MLFLOW_S3_", "AWS_")


def bucket_environment(env_file: str) -> dict[str, str]:
    """The bucket clients' variables of the server's environment file, for a process without them (a task)."""
    return {key: value for key, value in read_env_file(env_file).items() if key.startswith(BUCKET_ENV_PREFIXES)}


def is_bucket(location: str | None) -> bool:
    return bool(location) and BUCKET.match(location) is not None


def default_label() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - older Pythons
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-mlflow-{installed_mlflow_version() or 'unknown'}"


def run_backup(uris: dict[str, str], backup_dir: str, destination: str | None, keep: int,
               artifacts_dir: str | None = None, label: str | None = None) -> dict:
    """The backup unit's job: a backup in backup_dir/LABEL, uploaded to destination when it is a bucket
    (the local copy removed then), the keep newest kept at the destination, and the result in
    backup_dir/last-backup.json."""
    label = label or default_label()
    result = backup(uris, backup_dir, label, artifacts_dir=artifacts_dir)
    directory = os.path.join(backup_dir, label)
    if is_bucket(destination):
        bucket = Bucket(destination)
        names = [entry["file"] for entry in result["databases"]]
        names += [result["artifacts"]["file"]] if result.get("artifacts") else []
        for name in [*names, MANIFEST]:  # the manifest last: without it the backup is incomplete
            bucket.upload(os.path.join(directory, name), bucket.key(label, name))
        shutil.rmtree(directory)
        location = bucket.url(label)
        kept = bucket.prune(keep)
    else:
        location = directory
        kept = prune(backup_dir, keep)
    summary = {key: result[key] for key in ("label", "created", "mlflow_version", "databases", "artifacts")
               if key in result}
    summary.update(location=location, removed=kept["removed"], kept=kept["kept"])
    with private_umask():
        last = os.path.join(backup_dir, LAST_BACKUP)
        with open(last + ".new", "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        os.replace(last + ".new", last)
    return summary


def target_content(uris: dict[str, str], canary_experiment: str = "", users: tuple[str, ...] = ()) -> list[str]:
    """What the target databases hold beyond what a deploy makes (the Default experiment, the canary's
    experiment, the admin and the server's own users): empty for a fresh server."""
    import sqlalchemy

    found = []
    checks = {
        "tracking": [
            ("experiments", "SELECT name FROM experiments WHERE experiment_id <> 0", "experiments"),
            ("runs", "SELECT run_uuid FROM runs WHERE experiment_id = 0", "runs in the Default experiment"),
            ("trace_info", "SELECT request_id FROM trace_info WHERE experiment_id = 0",
             "traces in the Default experiment"),
            ("registered_models", "SELECT name FROM registered_models", "registered models or prompts"),
        ],
        "auth": [("users", "SELECT username FROM users", "users")],
    }
    ignored = {"experiments": {canary_experiment}, "users": set(users)}
    for database, uri in uris.items():
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                inspector = sqlalchemy.inspect(connection)
                for table, query, what in checks[database]:
                    if not inspector.has_table(table):
                        continue
                    names = [row[0] for row in connection.execute(sqlalchemy.text(query))]
                    names = [name for name in names if name not in ignored.get(table, set())]
                    if names:
                        found.append(f"{len(names)} {what} in the {database} database")
        finally:
            engine.dispose()
    return found


def resolve_source(source: str, backup_dir: str, destination: str | None) -> tuple[str, str]:
    """(where, label) of the backup --from names: a gs:// or s3:// URL of one backup, an absolute path
    on the VM (its directory or manifest), a label of the configured destination, or `latest`."""
    if is_bucket(source):
        url = re.sub(rf"/{re.escape(MANIFEST)}$", "", source.rstrip("/"))
        return url, url.rsplit("/", 1)[-1]
    if source.startswith("/"):
        directory = os.path.dirname(source) if source.endswith("/" + MANIFEST) else source.rstrip("/")
        return directory, os.path.basename(directory)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", source):
        raise BackupError(f"--from {source}: give a backup's label, `latest`, a gs:// or s3:// URL or an absolute path")
    if is_bucket(destination):
        bucket = Bucket(destination)
        labels = bucket.complete_backups()
        label = (labels[0] if labels else None) if source == "latest" else source
        if label is None:
            raise BackupError(f"{destination} holds no complete backup")
        return bucket.url(label), label
    labels = complete_backups(backup_dir)
    label = (labels[0] if labels else None) if source == "latest" else source
    if label is None:
        raise BackupError(f"{backup_dir} holds no complete backup")
    return os.path.join(backup_dir, label), label


def stage(where: str, label: str, staging: str) -> str:
    """The manifest path of the backup at where: a local one as it is, a bucket's downloaded into
    staging/LABEL (root only; an earlier staging copy is replaced)."""
    if not is_bucket(where):
        path = os.path.join(where, MANIFEST)
        if not os.path.exists(path):
            raise BackupError(f"{where} holds no {MANIFEST}: not a complete backup")
        return path
    bucket = Bucket(where.rsplit("/", 1)[0])  # the backup's parent: its label is the last component
    directory = os.path.join(staging, label)
    with private_umask():
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(directory, mode=0o700)
        path = os.path.join(directory, MANIFEST)
        try:
            bucket.download(bucket.key(label, MANIFEST), path)
        except Exception as exc:
            raise BackupError(
                f"{where} holds no readable {MANIFEST} ({type(exc).__name__}): not a complete backup"
            ) from exc
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        names = [entry["file"] for entry in manifest["databases"]]
        names += [manifest["artifacts"]["file"]] if manifest.get("artifacts") else []
        for name in names:
            if os.sep in name or name in (".", "..", MANIFEST):
                raise BackupError(f"the manifest of {where} names a file {name!r} a restore does not read")
            bucket.download(bucket.key(label, name), os.path.join(directory, name))
    return path


def check_restore(manifest_path: str, uris: dict[str, str], artifacts_dir: str | None, force: bool,
                  canary_experiment: str = "", users: tuple[str, ...] = ()) -> dict:
    """Every refusal of a restore, before anything changes: checksums, the MLflow version, the target's
    content (unless force), where the artifacts go."""
    manifest = read_manifest(manifest_path, uris)
    installed = installed_mlflow_version()
    taken_with = manifest.get("mlflow_version")
    if taken_with and installed and version_key(taken_with) > version_key(installed):
        raise BackupError(
            f"the backup was taken with MLflow {taken_with}, newer than MLflow {installed} on this server; "
            f"its schema would not serve here. Upgrade this server first (python -m mlflow_ansible upgrade "
            f"--to {taken_with}, then set mlflow_version: {taken_with}), then restore"
        )
    if manifest.get("artifacts") and not artifacts_dir:
        raise BackupError(
            "the backup holds artifacts from the VM's disk, but this server keeps its artifacts elsewhere "
            "(tracking_server_artifacts_destination): deploy it with a local artifacts destination, then restore"
        )
    content = target_content(uris, canary_experiment, users)
    if content and not force:
        raise BackupError(
            f"the target is not empty ({'; '.join(content)}): nothing was changed. Restore onto a freshly "
            "deployed server, or pass --force (-e mlflow_ansible_restore_force=true) to replace what it holds"
        )
    return {"label": manifest["label"], "created": manifest.get("created"), "mlflow_version": taken_with,
            "installed_mlflow_version": installed, "manifest": manifest_path,
            "databases": manifest["databases"], "artifacts": manifest.get("artifacts"), "replaced": content}


def main(argv: list[str] | None = None) -> int:
    """The backup unit: ``mlflow_backup.py backup --backup-dir D [--destination URL] --keep N ...``.
    The database URIs come from the unit's environment (the server's EnvironmentFile)."""
    parser = argparse.ArgumentParser(description="Back up the MLflow databases and local artifacts.")
    parser.add_argument("action", choices=["backup"])
    parser.add_argument("--uri-variable", default="MLFLOW_BACKEND_STORE_URI")
    parser.add_argument("--no-tracking", action="store_true", help="no tracking database (an artifacts-only server)")
    parser.add_argument("--auth-config", help="basic_auth.ini: its database is backed up too")
    parser.add_argument("--backup-dir", required=True, help="local directory of the backups (and the staging one)")
    parser.add_argument("--destination", default="", help="gs:// or s3://BUCKET/PREFIX (default: --backup-dir)")
    parser.add_argument("--keep", type=int, required=True, help="complete backups kept at the destination")
    parser.add_argument("--artifacts-dir", help="the artifact directory, archived too")
    args = parser.parse_args(argv)
    uris: dict[str, str] = {}
    try:
        uris = database_uris(None, args.uri_variable, args.auth_config)
        if args.no_tracking:
            uris.pop("tracking", None)
        summary = run_backup(uris, args.backup_dir, args.destination or None, args.keep, args.artifacts_dir)
    except Exception as exc:  # one line in the journal, without the URIs; the unit fails
        sys.stderr.write(f"mlflow-ansible backup failed: {mask(f'{type(exc).__name__}: {exc}', uris)[:3000]}\n")
        return 1
    sys.stdout.write(f"mlflow-ansible backup {summary['label']} complete at {summary['location']}\n")
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
