"""Experiments: create, get, search (filters, pagination), rename, delete/restore, tags."""

from __future__ import annotations

from mlflow.entities import ViewType


def test_create_get_rename_tags(client, uid):
    experiment_id = client.create_experiment(uid, tags={"team": "conformance", "stage": "new"})
    try:
        experiment = client.get_experiment(experiment_id)
        assert experiment.name == uid
        assert experiment.lifecycle_stage == "active"
        assert experiment.tags["team"] == "conformance"
        assert experiment.artifact_location  # the server chose one (proxied: mlflow-artifacts:/...)
        assert client.get_experiment_by_name(uid).experiment_id == experiment_id

        client.set_experiment_tag(experiment_id, "stage", "tagged")
        client.delete_experiment_tag(experiment_id, "team")
        tags = client.get_experiment(experiment_id).tags
        assert tags["stage"] == "tagged" and "team" not in tags

        client.rename_experiment(experiment_id, uid + "-renamed")
        assert client.get_experiment(experiment_id).name == uid + "-renamed"
        assert client.get_experiment_by_name(uid) is None
    finally:
        client.delete_experiment(experiment_id)


def test_delete_restore(client, uid):
    experiment_id = client.create_experiment(uid)
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    active = client.search_experiments(filter_string=f"name = '{uid}'")
    deleted = client.search_experiments(filter_string=f"name = '{uid}'", view_type=ViewType.DELETED_ONLY)
    assert active == [] and [e.experiment_id for e in deleted] == [experiment_id]
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    client.delete_experiment(experiment_id)


def test_search_filters_and_pages(client, uid):
    ids = [client.create_experiment(f"{uid}-{i}", tags={"parity": str(i % 2)}) for i in range(5)]
    try:
        prefix = f"name LIKE '{uid}-%'"
        everything = client.search_experiments(filter_string=prefix, order_by=["name ASC"])
        assert [e.name for e in everything] == [f"{uid}-{i}" for i in range(5)]

        odd = client.search_experiments(filter_string=f"{prefix} AND tags.parity = '1'")
        assert sorted(e.name for e in odd) == [f"{uid}-1", f"{uid}-3"]

        seen, token, pages = [], None, 0
        while True:
            page = client.search_experiments(
                filter_string=prefix, order_by=["name DESC"], max_results=2, page_token=token
            )
            seen += [e.name for e in page]
            pages += 1
            token = page.token
            if not token:
                break
        assert pages == 3
        assert seen == [f"{uid}-{i}" for i in reversed(range(5))]
    finally:
        for experiment_id in ids:
            client.delete_experiment(experiment_id)
