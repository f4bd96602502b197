#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Run the canary of an MLflow tracking server through its REST API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_canary
short_description: Check an MLflow tracking server end to end through its REST API
version_added: "0.1.0"
description:
  - Checks C(/health) and C(/version), creates (or reuses) the experiment O(experiment), creates a run,
    logs a metric and reads it back, uploads a small artifact through the artifact proxy (this
    server's, or the artifacts-only server the run's artifact URI names) and downloads it byte for
    byte, then closes the run.
  - With O(artifacts_only=true) checks an artifacts-only server instead (C(mlflow server --artifacts-only)) -
    uploads a small artifact, downloads it and deletes it.
  - Fails with the step that went wrong; the report is returned in RV(canary) either way.
  - Uses the Python standard library only, so it runs with the host's own C(python3) and does not depend
    on the MLflow virtual environment it checks.
  - The canary writes MLflow data (a run in O(experiment)), not configuration, so C(changed) is always false.
options:
  url:
    description: Base URL of the server, usually its loopback address (C(http://127.0.0.1:5000)).
    type: str
    required: true
  experiment:
    description:
      - Experiment the canary runs go to, created when missing.
      - With O(artifacts_only=true), the first path segment of the artifact written and deleted.
    type: str
    default: mlflow-ansible-canary
  run_name:
    description: Name of the canary's run (with O(artifacts_only=true), of its artifact).
    type: str
    default: canary
  artifacts_only:
    description: The server runs with C(--artifacts-only) (no tracking API).
    type: bool
    default: false
  username:
    description: Basic-auth user (a server with C(--app-name basic-auth)); without it no credentials are sent.
    type: str
  password:
    description: The password of O(username).
    type: str
  timeout:
    description: Seconds each HTTP request may take.
    type: float
    default: 30.0
attributes:
  check_mode:
    support: full
    description:
      - Reads only - C(/health) and C(/version), reported in RV(canary) with C(check_mode=true); no
        experiment, run or artifact is written.
  diff_mode:
    support: none
    description: The canary changes no configuration; there is nothing to compare.
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Run the canary against the local server, as the admin
  mlflow_ansible.tracking.mlflow_canary:
    url: http://127.0.0.1:5000
    experiment: mlflow-ansible-canary
    run_name: canary-{{ inventory_hostname }}
    username: admin
    password: "{{ admin_password }}"
  register: canary

- name: Check an artifacts-only server
  mlflow_ansible.tracking.mlflow_canary:
    url: http://127.0.0.1:5001
    artifacts_only: true
"""

RETURN = r"""
canary:
  description:
    - The canary's report, also when it fails. The role publishes it per host as the C(mlflow_canary)
      statistic, which the mlflow-ansible wrapper's summary reads (C(ok), C(version), C(run_id), C(error)).
  returned: always
  type: dict
  contains:
    ok:
      description: Whether every step passed.
      type: bool
      sample: true
    url:
      description: The server checked (O(url)).
      type: str
      sample: http://127.0.0.1:5000
    version:
      description: What C(/version) answered.
      type: str
      sample: 3.17.2
    experiment_id:
      description: The experiment of the canary's run.
      type: str
      returned: when a run was written
      sample: "1"
    run_id:
      description: The canary's run.
      type: str
      returned: when a run was written
      sample: 7b0e1c9e4f6a4c0e9f3b2a1d5c8e7f60
    artifact_sha256:
      description: SHA-256 of the artifact uploaded and downloaded back.
      type: str
      returned: when the artifact went through a proxy
    artifact_server:
      description: Host and port of the artifacts-only server the run's artifact URI names.
      type: str
      returned: when the run's artifacts live on an artifacts-only server
    artifact:
      description: Why no artifact round trip was made (clients reach the artifact store directly).
      type: str
      returned: when the run's artifact URI is neither proxied nor an artifacts-only server
    check_mode:
      description: True when only C(/health) and C(/version) were read (check mode).
      type: bool
      returned: in check mode
    error:
      description: The step that failed and what the server answered.
      type: str
      returned: on failure
      sample: "runs/create failed: {\"error_code\": \"PERMISSION_DENIED\"}"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_canary import (  # noqa: E402
    CanaryError,
    Client,
    basic_auth_headers,
    probe,
    run_canary,
)


def run(module) -> dict:
    params = module.params
    client = Client(params["url"], params["timeout"], basic_auth_headers(params["username"], params["password"]))
    report = {"url": params["url"]}
    try:
        if module.check_mode:
            probe(client, report)
            report["check_mode"] = True
        else:
            run_canary(client, params["experiment"], params["run_name"], params["artifacts_only"], report)
    except (CanaryError, OSError) as exc:
        report.update(ok=False, error=str(exc))
        module.fail_json(msg=f"canary against {params['url']}: {exc}", canary=report)
    report["ok"] = True
    return {"changed": False, "canary": report}


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "experiment": {"type": "str", "default": "mlflow-ansible-canary"},
            "run_name": {"type": "str", "default": "canary"},
            "artifacts_only": {"type": "bool", "default": False},
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "timeout": {"type": "float", "default": 30.0},
        },
        required_by={"password": "username"},
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
