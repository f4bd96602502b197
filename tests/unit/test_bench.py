"""The benchmark's own logic, without Docker: the load generator against a real HTTP server on loopback
(counts, errors, the warm-up left out), percentiles, the profile_tasks parser and the goal verdicts of
the table. The benchmark itself runs on demand (bench/run), not in the test suite."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import load  # noqa: E402 - bench/ is not a package: its modules import each other by name
import run as bench  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects
    seen: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.lock:
            self.seen.append(self.headers.get("Authorization", ""))
        status = 500 if body.get("step", 0) % 4 == 3 else 200
        payload = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_run_load_counts_successes_and_errors_apart(server):
    target = load.Target("loopback", server, username="admin", password="pw")

    def make_operation(client, index):
        def operation(client, step):
            status, _, _ = client.request("POST", "/log", {"thread": index, "step": step})
            return status

        return operation

    result = load.run_load(target, "log", make_operation, threads=3, duration=0.6, warmup=0.2)
    summary = result.summary()

    assert summary["requests"] > 0 and summary["errors"] > 0
    # Every fourth request of each thread answers 500: errors are about a third of the successes.
    assert 0.15 < summary["errors"] / summary["requests"] < 0.6
    assert summary["error_samples"] and all(sample == "HTTP 500" for sample in summary["error_samples"])
    assert summary["rps"] == round(summary["requests"] / 0.6, 1)
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    # The warm-up's requests were sent but not counted.
    assert len(_Handler.seen) > summary["requests"] + summary["errors"]
    assert set(_Handler.seen) == {"Basic YWRtaW46cHc="}


def test_a_failing_setup_is_reported_and_the_other_threads_stop(server):
    target = load.Target("loopback", server)

    def make_operation(client, index):
        if index == 1:
            raise RuntimeError("cannot create the run")
        return lambda client, step: 200

    result = load.run_load(target, "log", make_operation, threads=2, duration=0.2, warmup=0.0)

    assert result.requests == 0
    assert result.errors == 1
    assert result.error_samples == ["setup: cannot create the run"]


def test_percentile():
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile(values, 100) == 100.0
    assert load.percentile([7.0], 99) == 7.0
    assert load.percentile([], 50) == 0.0


def test_slowest_tasks_reads_profile_tasks_output():
    stdout = (
        "PLAY RECAP ****\n"
        "ours : ok=3 changed=1\n"
        "mlflow_ansible.tracking.mlflow : Install the packages with uv ------------- 4.78s\n"
        "Gather the minimal facts -------------------------------------------------- 0.95s\n"
        "mlflow_ansible.tracking.tracking_server : Wait for /health ---------------- 6.04s\n"
    )
    assert bench.slowest_tasks(stdout, 2) == [
        "6.04s mlflow_ansible.tracking.tracking_server : Wait for /health",
        "4.78s mlflow_ansible.tracking.mlflow : Install the packages with uv",
    ]


def _verdicts(results):
    rows = bench.table(results).splitlines()[2:]
    return {row.split("|")[1].strip(): row.split("|")[5].strip() for row in rows}


def test_table_verdicts_follow_the_goals():
    short = _verdicts(
        {
            "deploy": {"ours_seconds": 31.0, "plain_seconds": 100.0, "ratio": 0.31},
            "rerun": {"seconds": 7.5, "changed": 1},
            "ui": {"ours": {"total_bytes": 36}, "plain": {"total_bytes": 100}, "ratio": 0.36},
        }
    )
    met = _verdicts(
        {
            "deploy": {"ours_seconds": 29.0, "plain_seconds": 70.0, "ratio": 0.41},
            "rerun": {"seconds": 7.5, "changed": 0},
            "ui": {"ours": {"total_bytes": 35}, "plain": {"total_bytes": 100}, "ratio": 0.35},
        }
    )
    assert short == {
        "1. Cold deploy, fresh VM to healthy (s)": "short (0.31×)",
        "2. No-op re-run of site.yml (s, changed)": "short",
        "5. UI first load (bytes)": "short (0.36×)",
    }
    assert met == {
        "1. Cold deploy, fresh VM to healthy (s)": "met (0.41×)",
        "2. No-op re-run of site.yml (s, changed)": "met",
        "5. UI first load (bytes)": "met (0.35×)",
    }


def test_table_shows_the_accelerator_off_column_beside_ours():
    text = bench.table(
        {
            "deploy": {"ours_seconds": 40.0, "ours_linear_seconds": 70.5, "plain_seconds": 80.0, "ratio": 0.5},
            "rerun": {"seconds": 12.0, "changed": 0, "linear_seconds": 30.2},
        }
    )
    assert "| 40.0 (accelerator off: 70.5) " in text
    assert "| 12.0, changed=0 (accelerator off: 30.2) |" in text


def test_table_write_goal_needs_both_throughput_and_p99():
    def row(target, rps, p99):
        return {"operation": "log-metric", "target": target, "rps": rps, "p50_ms": 1.0, "p99_ms": p99}

    def verdict(ours, plain):
        return _verdicts({"load": {"rows": [ours, plain]}})["3. log-metric (req/s, p50/p99 ms)"]

    assert verdict(row("ours", 130.0, 90.0), row("plain", 100.0, 100.0)) == "met (1.30×)"
    assert verdict(row("ours", 200.0, 110.0), row("plain", 100.0, 100.0)) == "short (2.00×)"
    assert verdict(row("ours", 120.0, 50.0), row("plain", 100.0, 100.0)) == "short (1.20×)"


def test_table_of_the_recorded_full_run_matches_docs():
    """The figures in docs/benchmarks.md come from this JSON: the table rebuilt from it gives the same verdicts."""
    recorded = json.loads((REPO / "docs" / "bench" / "2026-11-29-full.json").read_text())
    verdicts = _verdicts(recorded["results"])
    docs = (REPO / "docs" / "benchmarks.md").read_text()
    assert verdicts["1. Cold deploy, fresh VM to healthy (s)"] == "short (1.03×)"
    assert verdicts["4. Artifact upload 1024 MiB (MiB/s)"] == "short (0.58×)"
    assert verdicts["4. Artifact download 1024 MiB (MiB/s)"] == "short (0.37×)"
    assert verdicts["4. Server memory growth (MiB, anon; cgroup)"] == "met (136 MB)"
    assert verdicts["4. Multipart upload, threshold 5 MiB, keyless"] == "met"
    assert verdicts["5. UI first load (bytes)"] == "met (0.256×)"
    assert recorded["results"]["deploy"]["ours_seconds"] == 82.5 and "| 82.5 | 80.0 |" in docs


def test_memory_verdict_reads_anonymous_memory():
    """The cgroup's usage (page cache of the proxy's temporary file included) is shown, not judged."""
    recorded = json.loads((REPO / "docs" / "bench" / "2026-11-22-full.json").read_text())
    verdicts = _verdicts(recorded["results"])
    # 2026-11-22: 204 MiB anonymous (213.9 MB) against a cgroup growth of 1259 MiB.
    assert verdicts["4. Server memory growth (MiB, anon; cgroup)"] == "short (214 MB)"
    assert verdicts["4. Multipart upload, threshold 5 MiB, keyless"] == "short"


def test_table_shows_the_memory_at_rest_of_both_servers():
    text = bench.table(
        {
            "rest": {
                "ours": {"memory_mib": 1890.2, "anon_mib": 1702.5, "processes": 14},
                "plain": {"memory_mib": 2101.0, "anon_mib": 1900.1, "processes": 16},
            }
        }
    )
    assert "| Memory at rest (MiB usage; anonymous; processes) | 1890.2; 1702.5; 14 | 2101.0; 1900.1; 16 |" in text
    assert "Memory at rest" not in bench.table({"rest": {"ours": {"memory": "no samples"}, "plain": {}}})
