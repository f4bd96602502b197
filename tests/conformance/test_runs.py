"""Runs: create, params/metrics/tags, log-batch, metric history, search (filters, order_by, page tokens),
delete/restore."""

from __future__ import annotations

import time

from mlflow.entities import Metric, Param, RunTag, ViewType


def test_log_and_read_back(client, experiment_id):
    run = client.create_run(experiment_id, run_name="logged", tags={"origin": "conformance"})
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "0.5")
    client.log_metric(run_id, "loss", 1.0, step=0)
    client.log_metric(run_id, "loss", 0.5, step=1)
    client.log_metric(run_id, "loss", 0.25, step=2)
    client.set_tag(run_id, "stage", "one")
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric("acc", (80 + i) / 100, now + i, i) for i in range(3)],
        params=[Param("beta", "2"), Param("gamma", "three")],
        tags=[RunTag("stage", "batch"), RunTag("extra", "x" * 500)],
    )
    client.delete_tag(run_id, "extra")
    client.set_terminated(run_id, status="FINISHED")

    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "logged"
    assert got.data.params == {"alpha": "0.5", "beta": "2", "gamma": "three"}
    assert got.data.metrics == {"loss": 0.25, "acc": 0.82}
    assert got.data.tags["stage"] == "batch" and got.data.tags["origin"] == "conformance"
    assert "extra" not in got.data.tags

    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_search_filters_order_and_pages(client, experiment_id):
    run_ids = []
    for i in range(5):
        run = client.create_run(experiment_id, run_name=f"r{i}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("score", float(i), int(time.time() * 1000), 0)],
            params=[Param("kind", "even" if i % 2 == 0 else "odd")],
            tags=[RunTag("index", str(i))],
        )
        run_ids.append(run.info.run_id)

    even = client.search_runs([experiment_id], filter_string="params.kind = 'even' and metrics.score >= 2")
    assert sorted(r.data.tags["index"] for r in even) == ["2", "4"]
    by_tag = client.search_runs([experiment_id], filter_string="tags.index = '3'")
    assert [r.info.run_id for r in by_tag] == [run_ids[3]]
    by_name = client.search_runs([experiment_id], filter_string="attributes.run_name LIKE 'r%'")
    assert len(by_name) == 5

    ordered = client.search_runs([experiment_id], order_by=["metrics.score DESC"])
    assert [r.data.metrics["score"] for r in ordered] == [4.0, 3.0, 2.0, 1.0, 0.0]

    seen, token, pages = [], None, 0
    while True:
        page = client.search_runs([experiment_id], order_by=["metrics.score ASC"], max_results=2, page_token=token)
        seen += [r.info.run_id for r in page]
        pages += 1
        token = page.token
        if not token:
            break
    assert pages == 3 and seen == run_ids


def test_delete_restore(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([experiment_id]) == []
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_id]
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [run_id]


def test_fluent_run(target, experiment_id):
    """The fluent API (mlflow.start_run and friends) on the tracking URI the target fixture set."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"p": 1, "q": "two"})
        mlflow.log_metrics({"m": 0.1}, step=3)
        mlflow.set_tags({"fluent": "yes"})
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params == {"p": "1", "q": "two"} and got.data.metrics == {"m": 0.1}
    assert got.data.tags["fluent"] == "yes" and got.info.status == "FINISHED"
