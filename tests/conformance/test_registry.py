"""The model registry: register, versions, aliases, tags, search, download a version's artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .models import log_trivial_model


def test_register_versions_aliases_tags_download(target, client, experiment_id, uid, tmp_path: Path):
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_trivial_model()
    try:
        client.create_registered_model(uid, tags={"owner": "conformance"}, description="conformance model")
        first = mlflow.register_model(info.model_uri, uid)
        second = client.create_model_version(
            uid, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags={"try": "2"}
        )
        assert (first.version, second.version) == ("1", "2")
        assert first.source == info.model_uri and first.run_id == run.info.run_id
        # The OSS registry keeps no model_id on a version (ModelVersion.model_id is None); the link is a tag on
        # the LoggedModel.
        linked = json.loads(client.get_logged_model(info.model_id).tags["mlflow.modelVersions"])
        assert {(v["name"], str(v["version"])) for v in linked} == {(uid, "1"), (uid, "2")}

        client.set_registered_model_alias(uid, "champion", "1")
        client.set_registered_model_alias(uid, "challenger", "2")
        assert client.get_model_version_by_alias(uid, "champion").version == "1"
        client.delete_registered_model_alias(uid, "challenger")
        assert client.get_registered_model(uid).aliases == {"champion": "1"}

        client.set_registered_model_tag(uid, "stage", "review")
        client.delete_registered_model_tag(uid, "owner")
        client.set_model_version_tag(uid, "1", "validated", "yes")
        client.delete_model_version_tag(uid, "2", "try")
        client.update_model_version(uid, "1", description="first")
        model = client.get_registered_model(uid)
        assert model.tags == {"stage": "review"} and model.description == "conformance model"
        version = client.get_model_version(uid, "1")
        assert version.tags == {"validated": "yes"} and version.description == "first"
        assert client.get_model_version(uid, "2").tags == {}

        assert [m.name for m in client.search_registered_models(filter_string=f"name = '{uid}'")] == [uid]
        assert [m.name for m in client.search_registered_models(filter_string=f"name LIKE '{uid}%'")] == [uid]
        versions = client.search_model_versions(f"name = '{uid}'", order_by=["version_number ASC"])
        assert [v.version for v in versions] == ["1", "2"]
        tagged = client.search_model_versions(f"name = '{uid}' and tags.validated = 'yes'")
        assert [v.version for v in tagged] == ["1"]
        latest = client.search_model_versions(f"name = '{uid}'", max_results=1, order_by=["version_number DESC"])
        assert [v.version for v in latest] == ["2"]

        downloaded = Path(mlflow.artifacts.download_artifacts(f"models:/{uid}@champion", dst_path=str(tmp_path)))
        assert (downloaded / "MLmodel").is_file() and (downloaded / "python_model.pkl").is_file()
        assert client.get_model_version_download_uri(uid, "2")
        loaded = mlflow.pyfunc.load_model(f"models:/{uid}/2")
        assert loaded.metadata.model_id == info.model_id
        assert loaded.predict(pd.DataFrame({"x": [41]}))["x"].tolist() == [42]

        client.delete_model_version(uid, "2")
        assert [v.version for v in client.search_model_versions(f"name = '{uid}'")] == ["1"]
    finally:
        client.delete_registered_model(uid)
    assert client.search_registered_models(filter_string=f"name = '{uid}'") == []
