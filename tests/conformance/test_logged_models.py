"""LoggedModels: initialize/finalize, log_model with a trivial pyfunc, search_logged_models, load and predict."""

from __future__ import annotations

import pandas as pd

from .models import log_trivial_model


def test_initialize_and_finalize(target, client, experiment_id):
    import mlflow
    from mlflow.entities import LoggedModelStatus

    model = mlflow.initialize_logged_model(
        name="pending", experiment_id=experiment_id, tags={"kind": "manual"}, params={"lr": "0.1"}, model_type="demo"
    )
    assert model.status == LoggedModelStatus.PENDING
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    got = client.get_logged_model(model.model_id)
    assert got.status == LoggedModelStatus.READY
    assert got.name == "pending" and got.tags["kind"] == "manual" and got.params == {"lr": "0.1"}
    assert got.model_type == "demo"

    client.set_logged_model_tags(model.model_id, {"extra": "1"})
    client.delete_logged_model_tag(model.model_id, "kind")
    tags = client.get_logged_model(model.model_id).tags
    assert tags.get("extra") == "1" and "kind" not in tags


def test_log_model_search_and_load(target, client, experiment_id):
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_trivial_model(params={"n": "1"})
        other = log_trivial_model(name="other")
        # After both: log_model links the run's metrics without a model so far to the model it logs.
        mlflow.log_metric("accuracy", 0.9, model_id=info.model_id)

    assert info.model_uri == f"models:/{info.model_id}"
    model = client.get_logged_model(info.model_id)
    assert model.source_run_id == run.info.run_id and model.status == "READY"
    artifacts = {a.path for a in client.list_logged_model_artifacts(info.model_id)}
    assert {"MLmodel", "python_model.pkl"} <= artifacts

    found = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    assert {m.model_id for m in found} == {info.model_id, other.model_id}
    by_name = client.search_logged_models([experiment_id], filter_string="name = 'model'")
    assert [m.model_id for m in by_name] == [info.model_id]
    by_metric = client.search_logged_models([experiment_id], filter_string="metrics.accuracy > 0.5")
    assert [m.model_id for m in by_metric] == [info.model_id]
    page = client.search_logged_models([experiment_id], max_results=1)
    assert len(page) == 1 and page.token
    rest = client.search_logged_models([experiment_id], max_results=1, page_token=page.token)
    assert {page[0].model_id, rest[0].model_id} == {info.model_id, other.model_id}

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.predict(pd.DataFrame({"x": [1, 2]}))["x"].tolist() == [2, 3]
