"""The cloud-sql-proxy TEST STAND-IN (molecule/resources/cloud_sql_proxy_standin.py) behaves like
Google's Cloud SQL Auth Proxy v2 where the cloudsql_proxy role relies on it: command line, TCP and
unix-socket listeners, byte forwarding, health endpoints, sd_notify and SIGTERM.

The "database" is a loopback TCP echo server; the instance p:r:127.0.0.1 points the stand-in at it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[2] / "molecule" / "resources" / "cloud_sql_proxy_standin.py"
INSTANCE = "p:r:127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def echo_server():
    """A loopback TCP server echoing every byte back, prefixed once with b'db:'. Yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn):
        with conn:
            try:
                conn.sendall(b"db:")
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:  # the stand-in went away mid-connection (SIGTERM tests)
                pass

    def loop():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def start_standin(echo_server, tmp_path):
    """Start the stand-in with the given arguments; waits until it is listening. Yields a starter."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict | None = None, wait_for: str | None = None) -> subprocess.Popen:
        environment = {**os.environ, "STANDIN_TARGET_PORT": str(echo_server), **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, str(STANDIN), *args], env=environment, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"stand-in exited {proc.returncode}: {proc.stderr.read()}"
            if wait_for and os.path.exists(wait_for):
                return proc
            if wait_for is None:
                return proc
            time.sleep(0.05)
        raise AssertionError(f"stand-in did not create {wait_for}")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()


def _connect_tcp(port: int, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    with sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while data := sock.recv(4096):
            received += data
    return received


def _get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_forwards_tcp_bytes_to_the_instance_host(start_standin):
    port = _free_port()
    start_standin("--address", "127.0.0.1", "--port", str(port), INSTANCE)
    payload = os.urandom(200_000)
    assert _roundtrip(_connect_tcp(port), payload) == b"db:" + payload


def test_further_instances_get_the_next_ports(start_standin):
    port = _free_port()
    start_standin(f"--port={port}", INSTANCE, "q:r:127.0.0.1")
    assert _roundtrip(_connect_tcp(port), b"one") == b"db:one"
    assert _roundtrip(_connect_tcp(port + 1), b"two") == b"db:two"


def test_health_endpoints_and_flags_are_reported(start_standin):
    port, http_port = _free_port(), _free_port()
    start_standin(
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--private-ip",
        "--auto-iam-authn",
        "--health-check",
        "--http-address",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--max-sigterm-delay",
        "3s",
        "--structured-logs",
        "--credentials-file",
        "/secret/key.json",
        INSTANCE,
    )
    for path in ("/startup", "/liveness"):
        assert _get(http_port, path)[0] == 200, path
    status, body = _get(http_port, "/readiness")
    assert status == 200, body
    report = json.loads(body)
    assert report["standin"] is True
    assert report["flags"]["private_ip"] is True
    assert report["flags"]["auto_iam_authn"] is True
    assert report["flags"]["health_check"] is True
    assert report["flags"]["max_sigterm_delay"] == "3s"
    assert report["flags"]["port"] == str(port)
    assert report["instances"] == [INSTANCE]
    assert report["listeners"] == [f"127.0.0.1:{port}"]
    assert "--structured-logs" not in report["unknown_flags"]  # a known switch
    assert "--credentials-file=<redacted>" in report["unknown_flags"]
    assert "/secret/key.json" not in json.dumps(report["flags"])
    assert _get(http_port, "/nope")[0] == 404


def test_flags_default_to_off(start_standin):
    http_port = _free_port()
    start_standin("--port", str(_free_port()), "--health-check", "--http-port", str(http_port), INSTANCE)
    report = json.loads(_get(http_port, "/readiness")[1])
    assert report["flags"]["private_ip"] is False
    assert report["flags"]["auto_iam_authn"] is False


def test_readiness_fails_when_the_database_is_unreachable(start_standin):
    http_port = _free_port()
    start_standin(
        "--port",
        str(_free_port()),
        "--health-check",
        "--http-port",
        str(http_port),
        INSTANCE,
        env={"STANDIN_TARGET_PORT": str(_free_port())},
    )
    assert _get(http_port, "/liveness")[0] == 200
    status, body = _get(http_port, "/readiness")
    assert status == 503
    assert json.loads(body)["errors"]


def test_no_health_server_without_the_flag(start_standin):
    port, http_port = _free_port(), _free_port()
    start_standin("--port", str(port), "--http-port", str(http_port), INSTANCE)
    _roundtrip(_connect_tcp(port), b"x")  # listening, so startup is over
    with pytest.raises(OSError):
        _get(http_port, "/liveness", timeout=0.5)


def test_postgres_unix_socket_path(start_standin, tmp_path):
    path = tmp_path / INSTANCE / ".s.PGSQL.5432"
    start_standin("--unix-socket", str(tmp_path), INSTANCE, wait_for=str(path))
    assert path.is_socket()
    assert path.stat().st_mode & 0o777 == 0o777  # like the real proxy; the directory guards access
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    assert _roundtrip(sock, b"pg") == b"db:pg"


def test_mysql_unix_socket_path(start_standin, tmp_path):
    path = tmp_path / INSTANCE
    start_standin("-u", str(tmp_path), INSTANCE, env={"STANDIN_ENGINE": "mysql"}, wait_for=str(path))
    assert path.is_socket()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    assert _roundtrip(sock, b"my") == b"db:my"


def test_unix_socket_directory_must_exist(echo_server, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(STANDIN), "--unix-socket", str(tmp_path / "missing"), INSTANCE],
        env=dict(os.environ, STANDIN_TARGET_PORT=str(echo_server)),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 1
    assert "no such file or directory" in proc.stderr


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_ready(start_standin, tmp_path, abstract):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"standin-test-{os.getpid()}-{time.monotonic_ns()}"
        receiver.bind("\0" + name)
        notify_socket = "@" + name
    else:
        notify_socket = str(tmp_path / "notify")
        receiver.bind(notify_socket)
    receiver.settimeout(10)
    port = _free_port()
    with receiver:
        start_standin("--port", str(port), INSTANCE, env={"NOTIFY_SOCKET": notify_socket})
        message = receiver.recv(4096).decode()
        assert "READY=1" in message.splitlines()
        # READY comes only once the listener accepts connections.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_sigterm_exits_like_the_real_proxy_and_removes_its_socket(start_standin, tmp_path):
    path = tmp_path / INSTANCE / ".s.PGSQL.5432"
    proc = start_standin("--unix-socket", str(tmp_path), "--max-sigterm-delay", "10s", INSTANCE, wait_for=str(path))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 143
    assert time.monotonic() - started < 5  # no open connection: no waiting for the delay
    assert not path.exists()
    assert "SIGTERM signal received" in proc.stderr.read()


def test_exit_zero_on_sigterm(start_standin):
    port = _free_port()
    proc = start_standin("--port", str(port), "--exit-zero-on-sigterm", INSTANCE)
    _connect_tcp(port).close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_sigterm_waits_for_open_connections_up_to_the_delay(start_standin):
    port = _free_port()
    proc = start_standin("--port", str(port), "--max-sigterm-delay", "1500ms", INSTANCE)
    conn = _connect_tcp(port)
    assert conn.recv(3) == b"db:"  # the forwarded connection is open
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 143
    assert time.monotonic() - started >= 1.4
    conn.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "missing instance_connection_name"),
        (("not-a-connection-name",), "invalid instance connection name"),
        (("--max-sigterm-delay", "soon", INSTANCE), 'invalid duration "soon"'),
    ],
    ids=["no-instance", "bad-instance", "bad-duration"],
)
def test_usage_errors(args, message):
    proc = subprocess.run(
        [sys.executable, str(STANDIN), *args], capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 1
    assert message in proc.stderr


def test_is_marked_as_a_stand_in():
    text = STANDIN.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    assert "TEST STAND-IN for Google's cloud-sql-proxy" in text
    assert os.access(STANDIN, os.X_OK)
