"""roles/tracking_server/files/mlflow_ansible_gcs_stream.py, MLflow's GCS artifact repository with streamed
proxy uploads, against gcp-storage-emulator on loopback (the testbed's GCS stand-in): the entry point replaces
MLflow's class for gs://, a body arriving in pieces goes to Cloud Storage in pieces while it arrives, a failed
body or a failed upload leaves no object, and MLflow's own server uses it for a proxied PUT."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

storage = pytest.importorskip("google.cloud.storage", reason="google-cloud-storage is in the test extra")
pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is in the test extra")

FILES = Path(__file__).resolve().parents[2] / "roles/tracking_server/files"
BUCKET = "mlflow-artifacts"
PIECE = 256 * 1024  # the smallest piece a resumable upload accepts
sys.path.insert(0, str(FILES))
# MLflow's registry first: it imports the plugin through the entry point, as the server does.
import mlflow.store.artifact.artifact_repository_registry  # noqa: E402, F401
import mlflow_ansible_gcs_stream as plugin  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def emulator():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gcp_storage_emulator.__main__ import main; main()", "start",
         "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/storage/v1/b", proc, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def repo(emulator, monkeypatch):
    """The plugin's repository under gs://mlflow-artifacts/<test>, uploading in 256 KiB pieces, and the
    upload requests it sends ((first byte, last byte) of each piece, as Content-Range says)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setenv("MLFLOW_GCS_UPLOAD_CHUNK_SIZE", str(PIECE))
    # Hand blocks of one piece to the upload thread (4 MiB in production) so that the queue is exercised.
    monkeypatch.setattr(plugin, "_BLOCK", PIECE)
    client = storage.Client(project="test")
    pieces: list[str] = []

    def record(response, *args, **kwargs):
        if response.request.method == "PUT" and "upload_id" in response.request.url:
            pieces.append(response.request.headers.get("Content-Range", ""))

    client._http.hooks["response"].append(record)
    prefix = f"test-{time.time_ns()}"
    return plugin.StreamingGCSArtifactRepository(f"gs://{BUCKET}/{prefix}", client=client), client, prefix, pieces


def _data(size: int) -> bytes:
    return b"".join(index.to_bytes(4, "big") * 16 for index in range(size // 64)) + b"x" * (size % 64)


async def _body(data: bytes, step: int = 64 * 1024, *, after=None, fail_at: int | None = None):
    """A request body as the ASGI server yields it; ``after(sent)`` may wait before each chunk."""
    for start in range(0, len(data), step):
        if fail_at is not None and start >= fail_at:
            raise ConnectionResetError("the client went away")
        if after is not None:
            await after(start)
        yield data[start:start + step]


def test_entry_point_replaces_mlflows_gcs_repository(emulator):
    """What the role installs (the module and its dist-info, on the server's PYTHONPATH) is what MLflow picks
    for gs://; without it, MLflow's own class."""
    script = ("from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository as get\n"
              "print(type(get('gs://mlflow-artifacts/x')).__name__)")
    env = dict(os.environ, STORAGE_EMULATOR_HOST=emulator)
    plain = os.pathsep.join(p for p in sys.path if p and Path(p).resolve() != FILES)
    names = []
    for path in (os.pathsep.join([str(FILES), plain]), plain):
        out = subprocess.run([sys.executable, "-c", script], env=dict(env, PYTHONPATH=path), capture_output=True,
                             text=True, check=True, cwd="/")
        names.append(out.stdout.strip().splitlines()[-1])
    assert names == ["StreamingGCSArtifactRepository", "GCSArtifactRepository"]


def test_async_upload_streams_in_pieces(repo):
    """3.5 pieces arrive in 64 KiB chunks; the body's last quarter is held back until two pieces have reached
    Cloud Storage (a repository that waits for the whole body would time out here); the object is the body."""
    repository, client, prefix, pieces = repo
    data = _data(3 * PIECE + PIECE // 2)

    async def after(sent: int) -> None:
        if sent >= 3 * PIECE:
            for _ in range(200):
                if len(pieces) >= 2:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"no piece uploaded while the body arrived ({pieces})")

    asyncio.run(repository.log_artifact_from_async_stream(_body(data, after=after), "model.bin", "run1/artifacts"))
    blob = client.bucket(BUCKET).get_blob(f"{prefix}/run1/artifacts/model.bin")
    assert blob.download_as_bytes() == data
    assert len(pieces) == 4
    assert pieces[0] == f"bytes 0-{PIECE - 1}/*"
    assert [f.path for f in repository.list_artifacts("run1/artifacts")] == ["run1/artifacts/model.bin"]


def test_async_upload_of_an_exact_number_of_pieces_and_of_nothing(repo):
    repository, client, prefix, _ = repo
    data = _data(2 * PIECE)
    asyncio.run(repository.log_artifact_from_async_stream(_body(data), "two.bin"))
    asyncio.run(repository.log_artifact_from_async_stream(_body(b""), "empty.json"))
    assert client.bucket(BUCKET).blob(f"{prefix}/two.bin").download_as_bytes() == data
    empty = client.bucket(BUCKET).get_blob(f"{prefix}/empty.json")
    assert (empty.size, empty.content_type) == (0, "application/json")


def test_body_failing_mid_stream_leaves_no_object(repo):
    """The client goes away after two and a half pieces (two already uploaded): the error reaches MLflow's
    handler and the resumable upload is cancelled, not finalized with what had arrived."""
    repository, client, prefix, pieces = repo
    data = _data(4 * PIECE)
    with pytest.raises(ConnectionResetError):
        asyncio.run(repository.log_artifact_from_async_stream(_body(data, fail_at=2 * PIECE + PIECE // 2), "x.bin"))
    assert len(pieces) >= 1
    assert list(client.list_blobs(BUCKET, prefix=prefix)) == []


def test_upload_failing_fails_the_request(emulator, monkeypatch):
    """Cloud Storage refuses the upload (no such bucket): the request fails with that error instead of
    waiting for room in the queue forever."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setattr(plugin, "_BLOCK", PIECE)
    repository = plugin.StreamingGCSArtifactRepository("gs://no-such-bucket/p", client=storage.Client(project="t"))

    async def run() -> None:
        await asyncio.wait_for(
            repository.log_artifact_from_async_stream(_body(_data(40 * PIECE)), "x.bin"), timeout=60
        )

    with pytest.raises(Exception, match="(?i)not ?found|404") as caught:
        asyncio.run(run())
    assert not isinstance(caught.value, asyncio.TimeoutError)


def test_sync_stream_upload(repo):
    """The Flask handler's path (gunicorn): a file-like body."""
    repository, client, prefix, pieces = repo
    data = _data(2 * PIECE + 1000)
    repository.log_artifact_from_stream(io.BytesIO(data), "dir/ignored/model.pkl", "run2")
    assert client.bucket(BUCKET).blob(f"{prefix}/run2/model.pkl").download_as_bytes() == data
    assert len(pieces) == 3


def test_mlflow_server_proxies_an_upload_through_the_plugin(emulator, tmp_path, monkeypatch):
    """MLflow's own server (uvicorn) with the role's PYTHONPATH: a proxied PUT of 3 MiB lands in the bucket
    as sent and reads back through the proxy (MLflow's download path, unchanged)."""
    port = _free_port()
    env = dict(
        os.environ, STORAGE_EMULATOR_HOST=emulator, MLFLOW_GCS_UPLOAD_CHUNK_SIZE=str(PIECE),
        PYTHONPATH=os.pathsep.join([str(FILES), *filter(None, sys.path)]), MLFLOW_DISABLE_TELEMETRY="true",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
         "--artifacts-destination", f"gs://{BUCKET}/server-{port}"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "wb"),  # noqa: SIM115
        start_new_session=True,  # its uvicorn and job runner children are stopped with it
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, 90)
        data = _data(3 * 1024 * 1024)
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow-artifacts/artifacts/0/run/artifacts/big.bin"
        request = urllib.request.Request(url, data=data, method="PUT")  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            assert response.status == 200
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            assert response.read() == data
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    client = storage.Client(project="test")
    assert client.bucket(BUCKET).blob(f"server-{port}/0/run/artifacts/big.bin").download_as_bytes() == data
