"""Prompts: register, versions, alias, load, search."""

from __future__ import annotations


def test_register_alias_load(target, client, uid):
    import mlflow

    name = uid.replace("-", "_")
    first = mlflow.genai.register_prompt(
        name=name, template="Hello {{ name }}!", commit_message="first", tags={"team": "conformance"}
    )
    try:
        second = mlflow.genai.register_prompt(name=name, template="Hi {{ name }}, {{ greeting }}", commit_message="2")
        assert (first.version, second.version) == (1, 2)

        mlflow.genai.set_prompt_alias(name, alias="production", version=1)
        production = mlflow.genai.load_prompt(f"prompts:/{name}@production")
        assert production.version == 1 and production.template == "Hello {{ name }}!"
        assert production.format(name="Ada") == "Hello Ada!"
        latest = mlflow.genai.load_prompt(f"prompts:/{name}/2")
        assert latest.variables == {"name", "greeting"} and latest.commit_message == "2"
        assert mlflow.genai.load_prompt(f"prompts:/{name}@latest").version == 2

        found = mlflow.genai.search_prompts(filter_string=f"name = '{name}'")
        assert [p.name for p in found] == [name]
        assert client.get_prompt(name).tags["team"] == "conformance"

        client.set_prompt_version_tag(name, 1, "reviewed", "yes")
        assert client.get_prompt_version(name, 1).tags["reviewed"] == "yes"
        mlflow.genai.delete_prompt_alias(name, alias="production")
        assert client.get_prompt_version(name, 1).aliases == []
    finally:
        for version in (2, 1):
            client.delete_prompt_version(name, str(version))
        client.delete_prompt(name)
