"""roles/tracking_server/files/mlflow_trace_archival.py, the trace archival timer's one pass, run for real
against a SQLite store made by MLflow's own client: an old trace moves to the archive and still reads;
a pass MLflow can only log as failed, or a configuration it cannot use, fails the unit (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parents[2] / "roles/tracking_server/files/mlflow_trace_archival.py"

LOG_OLD_TRACE = """
import sys, time, mlflow
mlflow.set_tracking_uri(sys.argv[1])
experiment = mlflow.set_experiment("archival")
begun = time.time_ns() - 600 * 10**9
span = mlflow.start_span_no_context(name="old_answer", span_type="CHAIN", inputs={"question": "q"},
                                    experiment_id=experiment.experiment_id, start_time_ns=begun)
span.set_outputs({"answer": "a"})
span.end(end_time_ns=begun + 10**9)
new = mlflow.start_span_no_context(name="new_answer", experiment_id=experiment.experiment_id)
new.end()
mlflow.flush_trace_async_logging()
print(span.trace_id, new.trace_id)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str, str]:
    """A SQLite store with a trace begun 10 minutes ago and one begun now: (URI, old id, new id)."""
    work = tmp_path_factory.mktemp("archival")
    uri = f"sqlite:///{work}/mlflow.db"
    env = dict(os.environ, MLFLOW_ARTIFACT_URI=str(work / "artifacts"))
    proc = subprocess.run([sys.executable, "-c", LOG_OLD_TRACE, uri], capture_output=True, text=True, check=True,
                          cwd=work, env=env)
    old, new = proc.stdout.split()[-2:]
    return uri, old, new


def run_pass(uri: str, config: Path, location: str) -> tuple[int, dict]:
    config.write_text(f"trace_archival:\n  enabled: true\n  location: {json.dumps(location)}\n"
                      "  retention: 5m\n  interval_seconds: 60\n")
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_TRACE_ARCHIVAL_CONFIG=str(config))
    proc = subprocess.run([sys.executable, str(HELPER)], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_unusable_configuration_fails_the_pass(store, tmp_path):
    code, answer = run_pass(store[0], tmp_path / "archival.yaml", str(tmp_path / "archive"))  # not a URI
    assert code == 1
    assert "Expected a URI string" in answer["error"]


def test_a_pass_mlflow_logs_as_failed_fails_the_unit(store, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the archive's directories would go")
    code, answer = run_pass(store[0], tmp_path / "archival.yaml", f"file://{blocker}/archive")
    assert code == 1, answer
    assert answer["error"]


def test_an_old_trace_moves_to_the_archive_and_still_reads(store, tmp_path):
    import mlflow
    from mlflow.tracing.constant import SpansLocation, TraceTagKey

    uri, old, new = store
    archive = tmp_path / "archive"
    code, answer = run_pass(uri, tmp_path / "archival.yaml", f"file://{archive}")
    assert (code, answer) == (0, {"archived": 1})
    client = mlflow.MlflowClient(uri)
    trace = client.get_trace(old)
    assert trace.info.tags[TraceTagKey.SPANS_LOCATION] == SpansLocation.ARCHIVE_REPO.value
    assert trace.info.tags[TraceTagKey.ARCHIVE_LOCATION].startswith(f"file://{archive}/")
    assert [span.name for span in trace.data.spans] == ["old_answer"]
    assert any(archive.rglob("traces.pb"))
    # Younger than the retention: stays in the database.
    assert client.get_trace(new).info.tags.get(TraceTagKey.SPANS_LOCATION) == SpansLocation.TRACKING_STORE.value
