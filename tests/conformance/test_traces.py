"""Traces: log with spans, search_traces with filters, trace tags, delete_traces."""

from __future__ import annotations

import os
import time

import pytest


def _make_traces(experiment_id: str, count: int) -> list[str]:
    """count traces of a root span with two children (one failing in the last trace); returns their IDs."""
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id)

    @mlflow.trace(span_type="TOOL")
    def lookup(word: str) -> str:
        return word.upper()

    @mlflow.trace(span_type="LLM")
    def fail(word: str) -> str:
        raise ValueError(f"no {word}")

    @mlflow.trace(name="pipeline", span_type="CHAIN")
    def pipeline(index: int) -> str:
        mlflow.update_current_trace(tags={"index": str(index), "parity": "even" if index % 2 == 0 else "odd"})
        with mlflow.start_span(name="prepare") as span:
            span.set_inputs({"index": index})
            span.set_attribute("size", index * 10)
            span.set_outputs({"ok": True})
        result = lookup(f"w{index}")
        if index == count - 1:
            fail(result)
        return result

    ids = []
    for index in range(count):
        try:
            pipeline(index)
        except ValueError:
            pass
        ids.append(mlflow.get_last_active_trace_id())
    mlflow.flush_trace_async_logging()
    return ids


def test_spans_search_tags_delete(target, client, experiment_id):
    from mlflow.entities import SpanStatusCode

    ids = _make_traces(experiment_id, 3)
    assert len(set(ids)) == 3

    trace = client.get_trace(ids[0])
    assert trace.info.experiment_id == experiment_id
    assert trace.info.state == "OK"
    spans = {span.name: span for span in trace.data.spans}
    assert set(spans) == {"pipeline", "prepare", "lookup"}
    root = spans["pipeline"]
    assert root.parent_id is None and root.inputs == {"index": 0} and root.outputs == "W0"
    assert spans["prepare"].parent_id == root.span_id and spans["prepare"].attributes["size"] == 0
    assert spans["lookup"].span_type == "TOOL" and spans["lookup"].outputs == "W0"

    failed = client.get_trace(ids[2])
    assert failed.info.state == "ERROR"
    fail_span = next(span for span in failed.data.spans if span.name == "fail")
    assert fail_span.status.status_code == SpanStatusCode.ERROR
    assert any(event.name == "exception" for event in fail_span.events)

    everything = client.search_traces(locations=[experiment_id])
    assert {t.info.trace_id for t in everything} == set(ids)
    even = client.search_traces(locations=[experiment_id], filter_string="tags.parity = 'even'")
    assert {t.info.trace_id for t in even} == {ids[0], ids[2]}
    errors = client.search_traces(locations=[experiment_id], filter_string="trace.status = 'ERROR'")
    assert [t.info.trace_id for t in errors] == [ids[2]]
    named = client.search_traces(locations=[experiment_id], filter_string="trace.name = 'pipeline'")
    assert len(named) == 3
    oldest = client.search_traces(locations=[experiment_id], order_by=["timestamp_ms ASC"], max_results=1)
    assert [t.info.trace_id for t in oldest] == [ids[0]] and oldest.token
    following = client.search_traces(
        locations=[experiment_id], order_by=["timestamp_ms ASC"], max_results=5, page_token=oldest.token
    )
    assert [t.info.trace_id for t in following] == ids[1:]

    client.set_trace_tag(ids[1], "reviewed", "yes")
    client.delete_trace_tag(ids[1], "parity")
    tags = client.get_trace(ids[1]).info.tags
    assert tags["reviewed"] == "yes" and "parity" not in tags
    reviewed = client.search_traces(locations=[experiment_id], filter_string="tags.reviewed = 'yes'")
    assert [t.info.trace_id for t in reviewed] == [ids[1]]

    assert client.delete_traces(experiment_id, trace_ids=[ids[0]]) == 1
    left = client.search_traces(locations=[experiment_id])
    assert {t.info.trace_id for t in left} == set(ids[1:])
    with pytest.raises(Exception, match="not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        client.get_trace(ids[0])


def test_otlp_ingestion(target, client, experiment_id):
    """An OpenTelemetry exporter's request (OTLP/HTTP protobuf to /v1/traces) lands as an MLflow trace."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    trace_id, now = os.urandom(16), time.time_ns()
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    root = scope.spans.add(trace_id=trace_id, span_id=os.urandom(8), name="otlp-root", kind=Span.SPAN_KIND_SERVER)
    root.start_time_unix_nano, root.end_time_unix_nano = now - 5_000_000, now
    root.status.code = Status.STATUS_CODE_OK
    child = scope.spans.add(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root.span_id, name="otlp-child")
    child.start_time_unix_nano, child.end_time_unix_nano = now - 4_000_000, now - 1_000_000

    response = target.request(
        "POST",
        "/v1/traces",
        data=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id},
    )
    assert response.status_code == 200, response.text[:300]
    (trace,) = client.search_traces(locations=[experiment_id])
    assert trace.info.trace_id == "tr-" + trace_id.hex()
    assert {span.name for span in trace.data.spans} == {"otlp-root", "otlp-child"}
