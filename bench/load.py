"""HTTP helpers and the load generator of the benchmark: keep-alive http.client connections, one per thread.

Nothing here knows about Ansible or Docker: a Target is a base URL with optional basic-auth credentials.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Target:
    """One tracking server as the load generator sees it."""

    name: str
    url: str  # scheme://host[:port], no path
    username: str = ""
    password: str = ""

    @property
    def headers(self) -> dict[str, str]:
        if not self.username:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


class Client:
    """A keep-alive connection to a Target (reconnects after an error). Not thread-safe: one per thread."""

    def __init__(self, target: Target, timeout: float = 900.0) -> None:
        self.target = target
        parts = urlsplit(target.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            # The testbed's certificate is self-signed: the benchmark measures, it does not authenticate the server.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=context, blocksize=1 << 20
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, blocksize=1 << 20)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        """Send one request and read the whole body; the body is JSON-encoded unless bytes or a file."""
        all_headers = dict(self.target.headers)
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data, response
            except (http.client.HTTPException, OSError):
                self.close()
                # A kept-alive connection the server closed: retry once on a fresh one (not a file body).
                if attempt == 2 or hasattr(body, "read"):
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, data, _ = self.request(method, path, body)
        if status != 200:
            raise RuntimeError(f"{self.target.name}: {method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data or b"{}")


# -- the load ---------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    operation: str
    target: str
    threads: int
    seconds: float
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "operation": self.operation,
            "target": self.target,
            "threads": self.threads,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(lat, 50), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "mean_ms": round(statistics.fmean(lat), 1) if lat else 0.0,
            "error_samples": self.error_samples[:3],
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct% of the values at or below it."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


# An operation: given the thread's client and a per-thread counter, send one request; return its status.
Operation = Callable[[Client, int], int]


def run_load(
    target: Target,
    name: str,
    make_operation: Callable[[Client, int], Operation],
    threads: int,
    duration: float,
    warmup: float,
) -> LoadResult:
    """``threads`` threads send requests back to back for warmup + duration seconds; the warmup is not counted."""
    result = LoadResult(operation=name, target=target.name, threads=threads, seconds=duration)
    lock = threading.Lock()
    clock = {"measure_from": 0.0, "stop_at": 0.0}

    def start_clock() -> None:
        # Every thread has finished its setup (its run, its TLS handshake): the clock starts now.
        clock["measure_from"] = time.monotonic() + warmup
        clock["stop_at"] = clock["measure_from"] + duration

    barrier = threading.Barrier(threads, action=start_clock)

    def worker(index: int) -> None:
        client = Client(target, timeout=60)
        try:
            operation = make_operation(client, index)
        except Exception as exc:  # noqa: BLE001 - reported, not raised, so the other threads finish
            with lock:
                result.errors += 1
                result.error_samples.append(f"setup: {exc}")
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        measure_from, stop_at = clock["measure_from"], clock["stop_at"]
        latencies: list[float] = []
        errors: list[str] = []
        count = 0
        i = 0
        while True:
            begin = time.monotonic()
            if begin >= stop_at:
                break
            try:
                status = operation(client, i)
                failure = None if status == 200 else f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001
                failure = f"{type(exc).__name__}: {exc}"
            end = time.monotonic()
            i += 1
            if begin < measure_from or end > stop_at:
                continue
            if failure:
                errors.append(failure)
            else:
                count += 1
                latencies.append((end - begin) * 1000)
        client.close()
        with lock:
            result.requests += count
            result.errors += len(errors)
            result.latencies_ms.extend(latencies)
            result.error_samples.extend(errors[:2])

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return result


# -- artifact transfers ------------------------------------------------------------------------------------


def file_chunks(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def upload(target: Target, path: str, local_file: str, size: int) -> tuple[float, int, str]:
    """PUT a file through the artifact proxy; (seconds, status, body head)."""
    client = Client(target)
    begin = time.monotonic()
    with open(local_file, "rb") as handle:
        status, data, _ = client.request(
            "PUT",
            path,
            body=handle,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
    seconds = time.monotonic() - begin
    client.close()
    return seconds, status, data[:300].decode(errors="replace")


def download(target: Target, path: str) -> tuple[float, int, int]:
    """GET a file through the artifact proxy, streaming and discarding it; (seconds, status, bytes)."""
    client = Client(target)
    conn = client._connect()
    begin = time.monotonic()
    conn.request("GET", path, headers=target.headers)
    response = conn.getresponse()
    received = 0
    while chunk := response.read(1 << 20):
        received += len(chunk)
    seconds = time.monotonic() - begin
    conn.close()
    return seconds, response.status, received
