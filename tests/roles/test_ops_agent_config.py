"""tracking_server: the Ops Agent's configuration (tracking_server_ops_agent_enabled). The agent cannot be installed
here, so its template is rendered with the role's defaults and vars (ansible-core's template module on the
controller) and the file is checked against the agent's configuration schema, as the agent's configuration
generator declares it (GoogleCloudPlatform/ops-agent, confgenerator/: logging_receivers.go,
logging_processors.go, logging_modify_fields.go, filter/internal/filter.bnf): the receiver and processor
types with the keys each accepts and requires, pipelines that name only defined components, an exclude_logs
condition in the agent's filter language, a modify_fields destination the agent lets one write."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "roles" / "tracking_server" / "templates" / "google-cloud-ops-agent.yaml.j2"

# Receiver types (Linux) and processor types with the keys each takes ("type" aside) and requires.
RECEIVERS = {
    "files": ({"include_paths", "exclude_paths", "wildcard_refresh_interval", "record_log_file_path"},
              {"include_paths"}),
    "syslog": ({"transport_protocol", "listen_host", "listen_port"},
               {"transport_protocol", "listen_host", "listen_port"}),
    "tcp": ({"format", "listen_host", "listen_port"}, {"format"}),
    "fluent_forward": ({"listen_host", "listen_port"}, set()),
    "systemd_journald": (set(), set()),
}
PROCESSORS = {
    "parse_json": ({"field", "time_key", "time_format"}, set()),
    "parse_regex": ({"field", "time_key", "time_format", "regex"}, {"regex"}),
    "exclude_logs": ({"matches_any"}, {"matches_any"}),
    "modify_fields": ({"fields"}, {"fields"}),
}
MODIFY_FIELD_KEYS = {"move_from", "copy_from", "static_value", "default_value", "type", "omit_if", "map_values",
                     "map_values_exclusive"}
# The LogEntry fields modify_fields may write (the agent's "writablefield").
WRITABLE = re.compile(r"^(severity|trace|spanId|traceSampled|labels\.\S+|jsonPayload\.\S+|httpRequest\.\S+"
                      r"|sourceLocation\.\S+|operation\.\S+)$")
# One comparison of the filter language on a jsonPayload member (text: no space, quote, parenthesis, or
# comparator character), with a quoted value.
_MEMBER = r'jsonPayload(\.[A-Za-z_][A-Za-z0-9_]*)+'
_COMPARISON = rf'{_MEMBER} (=|!=|=~|!~) "[^"\\]*"'
FILTER = re.compile(rf'^(NOT )?\({_COMPARISON}( (OR|AND) {_COMPARISON})*\)$')


def render(tmp_path: Path, variables: dict) -> dict:
    dest = tmp_path / "config.yaml"
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"ansible.builtin.import_role": {"name": "mlflow_ansible.tracking.tracking_server",
                                             "tasks_from": "defaults"}},
            {"ansible.builtin.template": {"src": str(TEMPLATE), "dest": str(dest), "mode": "0644"}},
        ],
    }]))
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}", str(playbook)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(dest.read_text())


def schema_problems(config: dict) -> list[str]:
    """What the Ops Agent would refuse in this user configuration (its logging part, which the role writes)."""
    problems = []
    unknown = set(config) - {"logging", "metrics", "traces", "global", "combined"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    logging = config.get("logging") or {}
    if set(logging) - {"receivers", "processors", "service"}:
        problems.append(f"unknown logging keys {sorted(set(logging) - {'receivers', 'processors', 'service'})}")
    for kind, components, types in (("receiver", logging.get("receivers") or {}, RECEIVERS),
                                    ("processor", logging.get("processors") or {}, PROCESSORS)):
        for name, component in components.items():
            if name.startswith("lib:") or not re.match(r"^[A-Za-z0-9_.-]+$", name):
                problems.append(f"{kind} id {name!r} is not allowed")
            allowed, required = types.get(component.get("type"), (None, None))
            if allowed is None:
                problems.append(f"{kind} {name}: unknown type {component.get('type')!r}")
                continue
            keys = set(component) - {"type"}
            if keys - allowed:
                problems.append(f"{kind} {name}: unknown keys {sorted(keys - allowed)}")
            if required - keys:
                problems.append(f"{kind} {name}: missing {sorted(required - keys)}")
            if component.get("time_key") and not component.get("time_format"):
                problems.append(f"{kind} {name}: time_key without time_format")
            if component["type"] == "exclude_logs":
                conditions = component.get("matches_any")
                if not isinstance(conditions, list) or not conditions:
                    problems.append(f"{kind} {name}: matches_any must be a non-empty list")
                problems += [f"{kind} {name}: {c!r} is not a filter"
                             for c in conditions or [] if not FILTER.match(str(c))]
            if component["type"] == "modify_fields":
                for dest, field in (component.get("fields") or {}).items():
                    if not WRITABLE.match(dest):
                        problems.append(f"{kind} {name}: {dest} cannot be written")
                    if set(field) - MODIFY_FIELD_KEYS:
                        problems.append(f"{kind} {name}: {dest} has unknown keys "
                                        f"{sorted(set(field) - MODIFY_FIELD_KEYS)}")
                    if len({"move_from", "copy_from", "static_value"} & set(field)) > 1:
                        problems.append(f"{kind} {name}: {dest} has more than one source")
    pipelines = ((logging.get("service") or {}).get("pipelines") or {})
    for name, pipeline in pipelines.items():
        if set(pipeline) - {"receivers", "processors"}:
            problems.append(f"pipeline {name}: unknown keys {sorted(set(pipeline) - {'receivers', 'processors'})}")
        if not pipeline.get("receivers"):
            problems.append(f"pipeline {name}: no receivers")
        problems += [f"pipeline {name}: receiver {r} is not defined" for r in pipeline.get("receivers") or []
                     if r not in (logging.get("receivers") or {})]
        problems += [f"pipeline {name}: processor {p} is not defined" for p in pipeline.get("processors") or []
                     if p not in (logging.get("processors") or {})]
    return problems


@pytest.fixture(scope="module")
def default_config(tmp_path_factory):
    return render(tmp_path_factory.mktemp("ops-agent"), {"tls_proxy_enabled": True})


def test_the_rendered_configuration_fits_the_agents_schema(default_config):
    assert schema_problems(default_config) == []


def test_it_sends_the_servers_and_nginxs_journal_lines_with_their_json_parsed(default_config):
    logging = default_config["logging"]
    assert logging["receivers"] == {"mlflow_ansible_journald": {"type": "systemd_journald"}}
    assert logging["processors"]["mlflow_ansible_units"]["matches_any"] == [
        'NOT (jsonPayload._SYSTEMD_UNIT = "mlflow.service" OR jsonPayload._SYSTEMD_UNIT = "mlflow-api.service"'
        ' OR jsonPayload._SYSTEMD_UNIT = "nginx.service")']
    assert logging["processors"]["mlflow_ansible_json"] == {"type": "parse_json", "field": "MESSAGE"}
    severity = logging["processors"]["mlflow_ansible_severity"]
    assert severity == {"type": "modify_fields", "fields": {"severity": {"move_from": "jsonPayload.level"}}}
    assert logging["service"]["pipelines"] == {"mlflow_ansible": {
        "receivers": ["mlflow_ansible_journald"],
        "processors": ["mlflow_ansible_units", "mlflow_ansible_json", "mlflow_ansible_severity"]}}


def test_without_nginx_or_split_only_the_servers_unit_and_extra_config_merges(tmp_path):
    config = render(tmp_path, {
        "tls_proxy_enabled": False, "tracking_server_service_name": "tracking",
        "tracking_server_ops_agent_extra_config": {"logging": {"service": {"log_level": "info"}},
                                                   "metrics": {"receivers": {"hostmetrics": {"type": "hostmetrics"}}}},
    })
    assert config["logging"]["processors"]["mlflow_ansible_units"]["matches_any"] == [
        'NOT (jsonPayload._SYSTEMD_UNIT = "tracking.service")']
    assert config["logging"]["service"]["log_level"] == "info"
    assert "mlflow_ansible" in config["logging"]["service"]["pipelines"]
    assert config["metrics"] == {"receivers": {"hostmetrics": {"type": "hostmetrics"}}}


@pytest.mark.parametrize(("broken", "problem"), [
    ({"logging": {"receivers": {"j": {"type": "systemd_journald", "units": ["x"]}}}}, "unknown keys ['units']"),
    ({"logging": {"processors": {"p": {"type": "parse_json", "time_key": "time"}}}}, "time_key without time_format"),
    ({"logging": {"processors": {"p": {"type": "exclude_logs", "matches_any": ['NOT (_SYSTEMD_UNIT = "x")']}}}},
     "is not a filter"),
    ({"logging": {"processors": {"p": {"type": "modify_fields", "fields": {"level": {"move_from": "x"}}}}}},
     "level cannot be written"),
    ({"logging": {"service": {"pipelines": {"x": {"receivers": ["nowhere"]}}}}}, "receiver nowhere is not defined"),
])
def test_the_schema_check_refuses_what_the_agent_refuses(default_config, broken, problem):
    merged = json.loads(json.dumps(default_config))
    for key, value in broken["logging"].items():
        merged["logging"].setdefault(key, {}).update(value)
    assert any(problem in found for found in schema_problems(merged)), schema_problems(merged)
