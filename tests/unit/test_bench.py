"""The benchmark's own logic, without Docker: the load generator against a real HTTP server on loopback
(counts, errors, the warm-up left out), percentiles, the profile_tasks parser, the goal verdicts of
the table, --ci's selection and its "fails only when a figure cannot be measured" rule, and the chart
drawn from the recorded runs. The benchmark itself runs in scripts/test (bench/run --ci) and on demand."""

from __future__ import annotations

import copy
import json
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import chart  # noqa: E402 - bench/ is not a package: its modules import each other by name
import load  # noqa: E402
import run as bench  # noqa: E402

RECORDED = sorted((REPO / "docs" / "bench").glob("*.json"))
SVG = "{http://www.w3.org/2000/svg}"


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


def test_table_shows_the_restart_of_both_servers():
    text = bench.table({"restart": _complete_run()["restart"]})
    assert (
        "| 6. Restart to the first API answer (s; VM CPU-s to it, settled) | 19.6; 24.1, 33.0 | 14.2; 20.3, 41.7 |"
        in text
    )
    assert "Restart" not in bench.table({"restart": {"ours": {"seconds": 3.0}, "plain": {}}})


# -- --ci -------------------------------------------------------------------------------------------------


def test_ci_mode_measures_the_headline_figures_on_two_vms():
    args, figures = bench.parse_args(["--ci"])
    assert bench.mode(args) == "ci"
    assert figures == ["deploy", "rest", "rerun", "load", "artifacts", "ui", "restart"]  # no levers
    assert (args.name, args.threads) == ("benchci", 8)
    assert bench.testbed_vms("ci") == ["ours", "plain"]  # no accelerator-off VM
    assert bench.testbed_vms("quick") == bench.testbed_vms("full") == ["ours", "linear", "plain"]
    ci, quick = bench.SIZES["ci"], bench.SIZES["quick"]
    # The load figure's windows (4 operations, 2 servers) stay within a minute of the 5-minute budget.
    assert len(bench.OPERATIONS) * 2 * (ci["duration"] + ci["warmup"]) <= 60
    assert ci["artifact_bytes"] == 20 * bench.MIB and ci["search_runs"] <= quick["search_runs"]


def test_ci_mode_keeps_the_other_options():
    argv = ["--ci", "--name", "hbench", "--only", "ui,load", "--json", "/tmp/x.json", "--threads", "4"]
    args, figures = bench.parse_args(argv)
    assert (args.name, args.json, args.threads) == ("hbench", "/tmp/x.json", 4)
    assert figures == ["deploy", "load", "ui"]  # deploy always, then the fixed order
    args, figures = bench.parse_args([])
    assert (bench.mode(args), args.name, args.threads, figures) == ("full", "bench", 16, bench.FIGURES)
    assert bench.mode(bench.parse_args(["--quick"])[0]) == "quick"


def test_ci_and_quick_do_not_go_together(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--ci", "--quick"])
    assert "not allowed with argument" in capsys.readouterr().err


def _complete_run():
    """The recorded full run (every figure measured) with memory at rest added: a run with nothing missing."""
    results = json.loads((REPO / "docs" / "bench" / "2026-11-29-full.json").read_text())["results"]
    results["rest"] = json.loads((REPO / "docs" / "bench" / "2026-12-02-quick-executor.json").read_text())["results"][
        "rest"
    ]
    results["restart"] = {
        "ours": {"seconds": 19.6, "cpu_seconds_to_answer": 24.1, "cpu_seconds_settled": 33.0, "processes": 8},
        "plain": {"seconds": 14.2, "cpu_seconds_to_answer": 20.3, "cpu_seconds_settled": 41.7, "processes": 11},
    }
    return results


def test_a_run_with_every_figure_measured_passes_whatever_its_goals():
    results = _complete_run()
    # Most goals of this run are short (the table says so): the exit status does not read them.
    assert "short" in bench.table(results)
    assert bench.outcome(results, bench.CI_FIGURES, bench.SIZES["full"], None) == (0, None, [])


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda r: r.pop("deploy"), "deploy: no cold deploy time for both servers"),
        (lambda r: r["rest"].update({"plain": {"memory": "no samples"}}), "rest: no memory read for plain"),
        (lambda r: r.pop("rerun"), "rerun: no re-run time"),
        (
            lambda r: next(
                row for row in r["load"]["rows"] if row["operation"] == "log-batch" and row["target"] == "ours"
            ).update({"requests": 0, "rps": 0.0, "error_samples": ["HTTP 503"]}),
            "load: no successful log-batch request to ours (HTTP 503)",
        ),
        (
            lambda r: r["load"]["rows"].pop(),  # the last row: search-runs on plain
            "load: no successful search-runs request to plain",
        ),
        (lambda r: r["artifacts"]["plain"].update({"upload_status": 500}), "artifacts: plain upload answered 500"),
        (
            lambda r: r["artifacts"]["ours"].update({"download_bytes": 1000}),
            "artifacts: ours download answered 200, 1000 of 1073741824 bytes",
        ),
        (lambda r: r["ui"].pop("ours"), "ui: no first load from ours"),
        (lambda r: r["restart"].update({"plain": {}}), "restart: no restart time of plain"),
    ],
)
def test_a_figure_without_measurement_fails_the_run(break_it, message):
    results = copy.deepcopy(_complete_run())
    break_it(results)
    status, failed, missing = bench.outcome(results, bench.CI_FIGURES, bench.SIZES["full"], None)
    assert status == 1
    assert missing == [message]
    assert failed == f"not measured: {message}"


def test_only_the_selected_figures_are_checked_and_a_break_off_is_kept():
    results = {"deploy": {"ours_seconds": 40.0, "plain_seconds": 80.0, "ratio": 0.5}}
    assert bench.outcome(results, ["deploy", "levers"], bench.SIZES["ci"], None) == (0, None, [])
    status, failed, missing = bench.outcome(results, ["deploy", "ui"], bench.SIZES["ci"], "BenchError: boom")
    assert (status, failed) == (1, "BenchError: boom")
    assert missing == ["ui: no first load from ours", "ui: no first load from plain"]


def test_every_recorded_run_measured_its_figures():
    """The recorded runs pass the rule for the figures they ran (so the rule does not fail a good run)."""
    for path in RECORDED:
        data = json.loads(path.read_text())
        figures = [figure for figure in bench.CI_FIGURES if figure in data["results"]]
        assert bench.unmeasured(data["results"], ["deploy", *figures], data["sizes"]) == [], path.name


# -- the chart ----------------------------------------------------------------------------------------------


def _svg(text):
    root = ET.fromstring(text)  # noqa: S314 - the SVG bench/chart.py just wrote
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}
    return root, groups


def test_chart_of_the_recorded_runs_has_every_figure_and_the_trend(tmp_path):
    out = tmp_path / "chart.svg"
    assert chart.main([*map(str, RECORDED), "-o", str(out)]) == 0
    _, groups = _svg(out.read_text())

    bars = {key.removeprefix("bar-"): g for key, g in groups.items() if key.startswith("bar-")}
    assert list(bars) == [
        "deploy",
        "rest",
        "log-metric",
        "log-batch",
        "create-run",
        "search-runs",
        "upload",
        "download",
        "ui",
    ]
    # Each bar comes from the newest run that measured the figure.
    assert bars["deploy"].get("data-run") == "2026-12-02-full"
    assert float(bars["deploy"].get("data-ratio")) == pytest.approx(85.4 / 160.0, abs=1e-3)
    assert bars["rest"].get("data-run") == "2026-12-02-full"
    assert bars["log-metric"].get("data-run") == "2026-12-02-full"
    assert float(bars["log-metric"].get("data-ratio")) == pytest.approx(74.3 / 116.5, abs=1e-3)
    assert float(bars["ui"].get("data-ratio")) == pytest.approx(1347275 / 5273165, abs=1e-3)
    # Colour: better than plain in green (a lower deploy time; fewer UI bytes), worse in orange (fewer req/s).
    fill = {key: g.find(f"{SVG}rect").get("fill") for key, g in bars.items()}
    assert fill["deploy"] == fill["ui"] == chart.BETTER
    assert fill["log-metric"] == fill["upload"] == chart.WORSE

    points = {key: int(g.get("data-points")) for key, g in groups.items() if key.startswith("trend-")}
    # Every run has a cold deploy; 8 of the 12 a no-op re-run; the 4 full runs with load the ratios.
    assert points == {
        "trend-deploy-ours": 12,
        "trend-deploy-plain": 12,
        "trend-rerun-ours": 8,
        "trend-log-metric": 4,
        "trend-log-batch": 4,
        "trend-create-run": 4,
        "trend-search-runs": 4,
    }
    deploy = groups["trend-deploy-ours"]
    circles = deploy.findall(f"{SVG}circle")
    assert len(circles) == 12
    xs = [float(c.get("cx")) for c in circles]
    assert xs == sorted(xs)  # oldest first, by start time
    titles = [c.find(f"{SVG}title").text for c in circles]
    assert titles[0] == "1. 2026-11-22-full-before-deploy-speedups: cold deploy, ours 85.4"
    assert titles[-1] == "12. 2026-12-02-full: cold deploy, ours 85.4"


def test_chart_copes_with_sparse_runs_and_draws_the_current_run_last(tmp_path):
    old = tmp_path / "old.json"
    # An old JSON: no started, no mode, only a deploy.
    old.write_text(json.dumps({"date": "2026-01-01", "results": {"deploy": {"ours_seconds": 90, "plain_seconds": 60}}}))
    current = {
        "started": "2026-12-03T10:00:00+00:00",
        "mode": "ci",
        "results": {
            "deploy": {"ours_seconds": 45.0, "plain_seconds": 90.0},
            "rerun": {"seconds": 12.0, "changed": 0},
            "load": {
                "rows": [
                    {"operation": "log-metric", "target": "ours", "rps": 150.0, "requests": 300},
                    {"operation": "log-metric", "target": "plain", "rps": 0.0, "requests": 0},
                ]
            },
        },
    }
    out = chart.write_chart(tmp_path / "c.svg", [old], current=(current, "2026-12-03-ci"))
    root, groups = _svg(out.read_text())
    assert sorted(k for k in groups if k.startswith("bar-")) == ["bar-deploy"]  # log-metric: plain had no request
    assert groups["bar-deploy"].get("data-run") == "2026-12-03-ci"
    assert float(groups["bar-deploy"].get("data-ratio")) == 0.5
    assert groups["bar-deploy"].find(f"{SVG}rect").get("fill") == chart.BETTER
    assert sorted(k for k in groups if k.startswith("trend-")) == [
        "trend-deploy-ours",
        "trend-deploy-plain",
        "trend-rerun-ours",
    ]
    circles = groups["trend-deploy-ours"].findall(f"{SVG}circle")
    assert [c.get("fill") for c in circles] == [chart.COLOURS[0], "white"]  # the --ci run is hollow
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "no run has these figures" in texts
    assert "1. old (full)" in texts and "2. 2026-12-03-ci (ci)" in texts


def test_chart_needs_a_run():
    with pytest.raises(ValueError, match="no runs"):
        chart.render([])


def test_nice_ticks():
    assert chart.nice_ticks(1.2) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert chart.nice_ticks(154.0) == [0, 50, 100, 150, 200]
    assert chart.nice_ticks(0) == [0.0, 1.0]


def test_the_committed_chart_is_the_recorded_runs():
    """docs/bench/chart.svg (embedded in docs/benchmarks.md) is what bench/chart.py draws from docs/bench/*.json."""
    committed = (REPO / "docs" / "bench" / "chart.svg").read_text()
    assert committed == chart.render(chart.read_run(path) for path in RECORDED), (
        "docs/bench/chart.svg is stale: python bench/chart.py docs/bench/*.json -o docs/bench/chart.svg"
    )
    assert "bench/chart.svg" in (REPO / "docs" / "benchmarks.md").read_text()
