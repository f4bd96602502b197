#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Take a Cloud SQL on-demand backup and wait until it is DONE."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloudsql_backup
short_description: Take a Cloud SQL on-demand backup and wait until it is done
version_added: "0.1.0"
description:
  - Starts an on-demand backup of a Cloud SQL instance (Cloud SQL Admin API C(backupRuns.insert)) and
    polls its operation (C(operations.get)) until it is C(DONE), for at most O(timeout) seconds.
    The google.cloud collection has no module for backup runs.
  - Runs on a Compute Engine VM with the VM's attached service account (keyless). Each access token
    comes from the metadata server at O(metadata_url). A new token is fetched for each polling round;
    a round ends a minute before its token expires or when the API rejects the token (HTTP 401).
  - The insert is tried again (up to 6 times, O(poll_interval) apart) while the API answers 409 (another
    operation runs on the instance), 429 or 503. Polls go on through 429, 5xx and network errors; 400,
    403 and 404 end them.
  - Fails with a message saying what to fix when no token comes, when the backup cannot be started
    (missing permission, access scopes, API not enabled, unknown instance, busy instance), when the
    operation cannot be polled, when it is not done in time, or when it ends with an error.
  - Access tokens never appear in the result or in messages.
  - Needs only Python's standard library (the VM's system Python).
options:
  instance:
    description:
      - The Cloud SQL instance as its connection name, C(PROJECT:REGION:INSTANCE); PROJECT may be
        domain-scoped (C(example.com:project)).
    type: str
    required: true
  description:
    description: The backup's description (shown by C(gcloud sql backups list)).
    type: str
    default: mlflow-ansible on-demand backup
  timeout:
    description: Seconds to wait for the operation to be DONE (O(timeout) / O(poll_interval) polls at most).
    type: int
    default: 900
  poll_interval:
    description: Seconds between two polls of the operation (and between two tries of the insert).
    type: int
    default: 10
  metadata_url:
    description: Base URL of the GCE metadata server (another one for a test stand-in).
    type: str
    default: http://metadata.google.internal
  sqladmin_url:
    description: Base URL of the Cloud SQL Admin API (another one for Private Service Connect or a test stand-in).
    type: str
    default: https://sqladmin.googleapis.com
  names:
    description:
      - How messages name the options, for a caller whose users set them under other names (a role's
        variables). Keys are option names (V(instance), V(timeout), V(metadata_url), V(sqladmin_url));
        an option not given is named as itself.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: >-
      Reports that it would start a backup (changed) and returns RV(backup) with the status
      C(SKIPPED (check mode)); makes no request.
  diff_mode:
    support: none
    description: A backup changes no state a diff could show.
requirements:
  - A Compute Engine VM with a service account attached, allowed C(cloudsql.backupRuns.create) and
    C(cloudsql.instances.get) on the project (for example C(roles/cloudsql.editor)), and the
    C(cloud-platform) or C(sqlservice.admin) access scope.
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Back up the Cloud SQL instance before migrating
  mlflow_ansible.tracking.cloudsql_backup:
    instance: my-project:europe-west1:mlflow-db
    description: before upgrading MLflow
    timeout: 900
  register: cloudsql_backup

- name: Show the backup
  ansible.builtin.debug:
    msg: "{{ cloudsql_backup.backup.name }} (backup {{ cloudsql_backup.backup.backupId }})"
"""

RETURN = r"""
backup:
  description: The backup's operation, or in check mode what would be backed up.
  returned: success
  type: dict
  contains:
    project:
      description: The project of O(instance).
      type: str
      sample: my-project
    instance:
      description: The instance's name (the last part of O(instance)).
      type: str
      sample: mlflow-db
    name:
      description: The operation's name (empty in check mode).
      type: str
      sample: 9a1c0e2e-3f4b-4a4c-9a53-000000000000
    status:
      description: C(DONE), or C(SKIPPED (check mode)).
      type: str
      sample: DONE
    targetId:
      description: The instance the operation worked on.
      type: str
      sample: mlflow-db
    operationType:
      description: The operation's type.
      type: str
      returned: when a backup was taken
      sample: BACKUP_VOLUME
    backupId:
      description: The backup run's ID (C(gcloud sql backups describe ID --instance INSTANCE)).
      type: str
      returned: when a backup was taken
      sample: "1764672000000"
    startTime:
      description: When the operation started.
      type: str
      returned: when a backup was taken
    endTime:
      description: When the operation ended.
      type: str
      returned: when a backup was taken
    description:
      description: O(description).
      type: str
      returned: when a backup was taken
    polls:
      description: How many times the operation was polled.
      type: int
      returned: when a backup was taken
      sample: 3
msg:
  description: What was done, or what would be done in check mode.
  returned: always
  type: str
"""

import math  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlflow_ansible.tracking.plugins.module_utils.gcp_rest import (  # noqa: E402
    access_token,
    metadata_get,
    request,
)

INSTANCE_PATTERN = re.compile(r"^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]*:[a-z][a-z0-9-]*:[a-z][a-z0-9-]*$")
INSERT_TRIES = 6
INSERT_RETRY = (409, 429, 503)  # another operation runs on the instance (automated backup, maintenance); busy
POLL_STOP = (400, 401, 403, 404)  # a poll round ends on these; 401 only ends the round (a new token follows)
POLL_GO_ON = (200, 401, 429, 500, 502, 503, 504, -1)
TOKEN_MARGIN = 60  # seconds of a token's life left unused: a round ends that long before it expires
TIMEOUT = 30  # seconds per Admin API request
METADATA_TIMEOUT = 10


class BackupError(Exception):
    pass


class Backup:
    def __init__(self, params: dict, sleep=time.sleep):
        self.p = params
        names = params.get("names") or {}
        self.name = {key: names.get(key, key) for key in ("instance", "timeout", "metadata_url", "sqladmin_url")}
        parts = params["instance"].split(":")
        self.project, self.instance_id = ":".join(parts[:-2]), parts[-1]
        self.api = params["sqladmin_url"].rstrip("/") + "/v1/projects/" + self.project
        self.interval = max(params["poll_interval"], 1)
        self.max_polls = max(params["timeout"] // self.interval, 1)
        self.sleep = sleep

    # What each message says first: the option (under its caller's name) and its value.
    @property
    def _instance(self) -> str:
        return f"{self.name['instance']} ('{self.p['instance']}')"

    def token(self) -> tuple[str, int]:
        token, expires_in, answer = access_token(self.p["metadata_url"], METADATA_TIMEOUT)
        if token:
            return token, expires_in
        if answer.status == -1:
            problem = (f"it could not be reached ({answer.msg or 'no answer'}). The backup uses the VM's attached "
                       "service account: this must run on a Compute Engine VM.")
        elif answer.status == 404:
            problem = ("HTTP 404, the VM has no service account attached (with the VM stopped: gcloud compute "
                       "instances set-service-account VM --service-account=SA --scopes=cloud-platform).")
        elif answer.status == 200:
            problem = "the answer holds no access_token."
        else:
            problem = f"HTTP {answer.status} ({answer.msg})."
        raise BackupError(
            f"{self.name['instance']} is set, but no access token came from the metadata server at "
            f"{self.p['metadata_url']} ({self.name['metadata_url']}): {problem}"
        )

    def insert(self) -> tuple[dict, int]:
        """backupRuns.insert: the operation, and the first token's life (for the rounds' count)."""
        token, expires_in = self.token()
        url = f"{self.api}/instances/{self.instance_id}/backupRuns"
        for attempt in range(1, INSERT_TRIES + 1):
            answer = request(url, "POST", {"Authorization": f"Bearer {token}"},
                             {"description": self.p["description"]}, TIMEOUT)
            if answer.status not in INSERT_RETRY or attempt == INSERT_TRIES:
                break
            self.sleep(self.interval)
        operation = answer.json if isinstance(answer.json, dict) else {}
        if answer.status == 200 and operation.get("name"):
            return operation, expires_in
        raise BackupError(self._insert_failure(answer))

    def _insert_failure(self, answer) -> str:
        status, error_text, project = answer.status, answer.error_text, self.project
        if status == -1:
            problem = (f"the Cloud SQL Admin API could not be reached ({answer.msg or 'no answer'}); check "
                       f"{self.name['sqladmin_url']} and the VM's route to it (Private Google Access when it has no "
                       "external IP).")
        elif status == 401:
            problem = (f"the API rejected the access token from the metadata server "
                       f"({self.name['metadata_url']}).")
        elif status == 403 and re.search("ACCESS_TOKEN_SCOPE_INSUFFICIENT|insufficient authentication scopes",
                                         error_text):
            problem = ("the VM's access scopes do not allow the Cloud SQL Admin API: give the VM the cloud-platform "
                       "(or sqlservice.admin) scope (with the VM stopped: gcloud compute instances set-service-account "
                       "VM --service-account=SA --scopes=cloud-platform).")
        elif status == 403 and re.search("SERVICE_DISABLED|accessNotConfigured", error_text):
            problem = (f"the Cloud SQL Admin API is not enabled in project {project} "
                       f"(gcloud services enable sqladmin.googleapis.com --project {project}).")
        elif status == 403:
            email = metadata_get(self.p["metadata_url"], "/email", METADATA_TIMEOUT)
            account = f" {email.text.strip()}" if email.status == 200 else ""
            problem = (f"permission denied: the VM's service account{account} needs the IAM permission "
                       f"cloudsql.backupRuns.create on project {project} (in roles/cloudsql.editor or "
                       "roles/cloudsql.admin). Cloud SQL also answers 403 for an instance that does not exist in the "
                       f"project: check {self.name['instance']}.")
        elif status == 404:
            problem = (f"the Cloud SQL instance {self.instance_id} was not found in project {project}: "
                       f"{self.name['instance']} must name an existing instance (gcloud sql instances list "
                       f"--project {project}).")
        elif status == 409:
            problem = (f"another operation kept running on the instance (HTTP 409, {INSERT_TRIES} tries); run the "
                       "upgrade again when it has finished.")
        elif status == 200:
            problem = "the answer names no operation."
        else:
            problem = "the Cloud SQL Admin API gave an unexpected answer."
        detail = f": {answer.error_message}" if answer.error_message else ""
        return (f"The Cloud SQL backup of {self._instance} could not be started: {problem} [backupRuns.insert at "
                f"{self.p['sqladmin_url']} ({self.name['sqladmin_url']}): HTTP {status}{detail}]")

    def poll(self, operation: dict, first_expires_in: int) -> tuple[dict, int]:
        """operations.get in rounds, each with a new token, until DONE, refused, or out of polls.
        Returns the last operation read and the number of polls."""
        url = f"{self.api}/operations/{operation['name']}"
        per_token = max((first_expires_in - TOKEN_MARGIN) // self.interval, 1)
        # Enough rounds for tokens as short-lived as the first one, and two for rejected tokens.
        rounds = math.ceil(self.max_polls / per_token) + 2
        polls, status, error = 0, 200, ""
        for _round in range(rounds):
            if operation.get("status") == "DONE" or polls >= self.max_polls or status not in POLL_GO_ON:
                break
            token, expires_in = self.token()
            round_polls = min(max((expires_in - TOKEN_MARGIN) // self.interval, 1), self.max_polls - polls)
            for attempt in range(1, round_polls + 1):
                if attempt > 1:
                    self.sleep(self.interval)
                answer = request(url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
                polls += 1
                status = answer.status
                error = "" if status == 200 else (answer.error_message or answer.msg)
                if status == 200 and isinstance(answer.json, dict):
                    operation = answer.json
                if (status == 200 and operation.get("status") == "DONE") or status in POLL_STOP:
                    break
            if operation.get("status") != "DONE" and status in POLL_GO_ON and polls < self.max_polls:
                if status != 401:  # a rejected token is replaced at once; otherwise the interval between polls
                    self.sleep(self.interval)
        name, project = operation["name"], self.project
        if operation.get("status") != "DONE" and status in (400, 403, 404):
            hint = (". The VM's service account needs cloudsql.instances.get (in roles/cloudsql.editor) to read "
                    "operations." if status == 403 else ".")
            raise BackupError(
                f"The Cloud SQL backup operation {name} of {self._instance} could not be polled: operations.get at "
                f"{self.p['sqladmin_url']} ({self.name['sqladmin_url']}) answered HTTP {status}"
                f"{(': ' + error) if error else ''}{hint}"
            )
        if operation.get("status") != "DONE":
            last = f", last poll HTTP {status}" if status != 200 else ""
            raise BackupError(
                f"The Cloud SQL backup of {self._instance} was not DONE within {self.name['timeout']} "
                f"({self.p['timeout']} s, {polls} polls): operation {name} is {operation.get('status') or 'UNKNOWN'}"
                f"{last}. Nothing was migrated. It may still finish: gcloud sql operations describe {name} --project "
                f"{project}; then run the upgrade again, or raise the timeout."
            )
        if "error" in operation:
            errors = (operation.get("error") or {}).get("errors") or []
            described = "; ".join(
                f"{e.get('code', '?')}: " + re.sub(r"[.\s]+$", "", str(e.get("message", ""))) for e in errors
            )
            raise BackupError(
                f"The Cloud SQL backup of {self._instance} failed: operation {name} is DONE with the error "
                f"{described or 'UNKNOWN'}. Nothing was migrated (gcloud sql operations describe {name} --project "
                f"{project})."
            )
        return operation, polls

    def run(self) -> dict:
        operation, expires_in = self.insert()
        operation, polls = self.poll(operation, expires_in)
        return {
            "project": self.project,
            "instance": self.instance_id,
            "name": operation["name"],
            "status": operation["status"],
            "targetId": operation.get("targetId", self.instance_id),
            "operationType": operation.get("operationType", ""),
            "backupId": str((operation.get("backupContext") or {}).get("backupId", "")),
            "startTime": operation.get("startTime", ""),
            "endTime": operation.get("endTime", ""),
            "description": self.p["description"],
            "polls": polls,
        }


def main():
    module = AnsibleModule(
        argument_spec={
            "instance": {"type": "str", "required": True},
            "description": {"type": "str", "default": "mlflow-ansible on-demand backup"},
            "timeout": {"type": "int", "default": 900},
            "poll_interval": {"type": "int", "default": 10},
            "metadata_url": {"type": "str", "default": "http://metadata.google.internal"},
            "sqladmin_url": {"type": "str", "default": "https://sqladmin.googleapis.com"},
            "names": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    names = params["names"] or {}
    if not INSTANCE_PATTERN.match(params["instance"]):
        module.fail_json(msg=f"{names.get('instance', 'instance')} must be the Cloud SQL instance as "
                             f"PROJECT:REGION:INSTANCE, not '{params['instance']}'.")
    if params["poll_interval"] < 1 or params["timeout"] < params["poll_interval"]:
        module.fail_json(msg=f"poll_interval ({params['poll_interval']}) must be at least 1 and not above "
                             f"{names.get('timeout', 'timeout')} ({params['timeout']}).")
    backup = Backup(params)
    if module.check_mode:
        module.exit_json(
            changed=True,
            msg=f"would start a backup of the Cloud SQL instance {params['instance']}",
            backup={"project": backup.project, "instance": backup.instance_id, "name": "",
                    "status": "SKIPPED (check mode)", "targetId": backup.instance_id},
        )
    try:
        result = backup.run()
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, backup=result,
                     msg=f"backup {result['backupId']} of the Cloud SQL instance {params['instance']} is DONE "
                         f"(operation {result['name']})")


if __name__ == "__main__":
    main()
