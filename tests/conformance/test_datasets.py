"""Datasets and inputs: mlflow.data from a pandas DataFrame, log_input, read back; GenAI evaluation datasets."""

from __future__ import annotations

import json

import pandas as pd


def test_log_input_from_pandas(target, client, experiment_id):
    import mlflow

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0], "label": ["a", "b", "a"]})
    dataset = mlflow.data.from_pandas(frame, source="https://example.com/data/train.csv", targets="y", name="train")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_input(dataset, context="training", tags={"split": "train"})

    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    logged = inputs[0]
    assert logged.dataset.name == "train"
    assert logged.dataset.digest == dataset.digest
    assert logged.dataset.source_type == "http"
    tags = {tag.key: tag.value for tag in logged.tags}
    assert tags["mlflow.data.context"] == "training" and tags["split"] == "train"
    schema = json.loads(logged.dataset.schema)["mlflow_colspec"]
    assert [column["name"] for column in schema] == ["x", "y", "label"]
    assert json.loads(logged.dataset.profile)["num_rows"] == 3
    assert mlflow.data.get_source(logged).url == "https://example.com/data/train.csv"


def test_evaluation_dataset_records(target, experiment_id, uid):
    from mlflow.genai import datasets

    dataset = datasets.create_dataset(name=uid, experiment_id=experiment_id, tags={"purpose": "conformance"})
    try:
        dataset.merge_records(
            [
                {"inputs": {"question": "2+2?"}, "expectations": {"answer": "4"}},
                {"inputs": {"question": "capital of France?"}, "expectations": {"answer": "Paris"}},
            ]
        )
        again = datasets.get_dataset(dataset_id=dataset.dataset_id)
        frame = again.to_df()
        assert sorted(row["question"] for row in frame["inputs"]) == ["2+2?", "capital of France?"]
        assert again.tags["purpose"] == "conformance"
        found = datasets.search_datasets(experiment_ids=[experiment_id])
        assert [d.dataset_id for d in found] == [dataset.dataset_id]
    finally:
        datasets.delete_dataset(dataset_id=dataset.dataset_id)
