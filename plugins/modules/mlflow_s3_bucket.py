#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Create the S3 bucket of an MLflow artifact location when it is missing."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_s3_bucket
short_description: Create the S3 bucket of an MLflow artifact location when it is missing
version_added: "0.1.0"
description:
  - Reads whether the bucket of O(location) exists (C(HeadBucket)) and creates it when it does not
    (C(CreateBucket), with the region as its location constraint outside C(us-east-1)).
  - The bucket is never changed or removed once it exists; a bucket another host created meanwhile
    (C(BucketAlreadyOwnedByYou)) counts as existing.
  - Works with AWS S3 and S3-compatible stores (MinIO, Ceph, ...) through O(endpoint_url).
  - Runs with the Python of MLflow's virtual environment, which has C(boto3) when the artifact store
    is S3. Access keys left empty come from boto3's usual chain (environment, instance profile).
  - Error messages never contain the access key or the secret key.
options:
  location:
    description:
      - The artifact location, C(s3://BUCKET) or C(s3://BUCKET/PREFIX); only the bucket is looked at.
    type: str
    required: true
  endpoint_url:
    description:
      - The S3 endpoint (the server's E(MLFLOW_S3_ENDPOINT_URL)); empty for AWS S3.
    type: str
    default: ""
  region:
    description:
      - The region (the server's E(AWS_DEFAULT_REGION)); also the new bucket's location constraint
        when not C(us-east-1).
    type: str
    default: ""
  access_key_id:
    description: The access key ID (the server's E(AWS_ACCESS_KEY_ID)); empty uses boto3's chain.
    type: str
    default: ""
  secret_access_key:
    description: The secret access key (the server's E(AWS_SECRET_ACCESS_KEY)); empty uses boto3's chain.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reads whether the bucket exists and reports that it would create it; creates nothing.
  diff_mode:
    support: full
    description: Shows the bucket absent before and present after when it is (or would be) created.
requirements:
  - boto3 in the interpreter running the module
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Create the artifact bucket when missing
  mlflow_ansible.tracking.mlflow_s3_bucket:
    location: s3://mlflow-artifacts/prod
    endpoint_url: https://minio.example.com:9000
    region: us-east-1
    access_key_id: "{{ s3_access_key_id }}"
    secret_access_key: "{{ s3_secret_access_key }}"
  vars:
    ansible_python_interpreter: /opt/mlflow/venv/bin/python
"""

RETURN = r"""
bucket:
  description: The bucket of O(location).
  returned: always
  type: str
  sample: mlflow-artifacts
created:
  description: Whether this run created the bucket (always false in check mode).
  returned: success
  type: bool
  sample: true
msg:
  description: What was done, or what would be done in check mode.
  returned: always
  type: str
  sample: would create the S3 bucket mlflow-artifacts
"""

import traceback  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    boto3 = None
    BOTO3_IMPORT_ERROR = traceback.format_exc()
else:
    BOTO3_IMPORT_ERROR = None

MISSING = ("404", "NoSuchBucket", "NotFound")


def _error_code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def run(module) -> dict:
    params = module.params
    bucket = urlsplit(params["location"]).netloc
    if urlsplit(params["location"]).scheme != "s3" or not bucket:
        module.fail_json(msg=f"location must be s3://BUCKET[/PREFIX], not {params['location']!r}", bucket=bucket)
    region = params["region"] or None
    client = boto3.client(
        "s3",
        endpoint_url=params["endpoint_url"] or None,
        region_name=region,
        aws_access_key_id=params["access_key_id"] or None,
        aws_secret_access_key=params["secret_access_key"] or None,
    )
    result = {"bucket": bucket, "created": False, "changed": False}
    try:
        client.head_bucket(Bucket=bucket)
        result["msg"] = f"the S3 bucket {bucket} exists"
        return result
    except ClientError as exc:
        if _error_code(exc) not in MISSING:
            raise
    result["changed"] = True
    if module._diff:
        result["diff"] = {"before": f"bucket {bucket}: absent\n", "after": f"bucket {bucket}: present\n"}
    if module.check_mode:
        result["msg"] = f"would create the S3 bucket {bucket}"
        return result
    extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region and region != "us-east-1" else {}
    try:
        client.create_bucket(Bucket=bucket, **extra)
    except ClientError as exc:  # another host made it meanwhile
        if _error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
        result.update(changed=False, msg=f"the S3 bucket {bucket} was created meanwhile by another run")
        result.pop("diff", None)
        return result
    result.update(created=True, msg=f"created the S3 bucket {bucket}")
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "location": {"type": "str", "required": True},
            "endpoint_url": {"type": "str", "default": ""},
            "region": {"type": "str", "default": ""},
            "access_key_id": {"type": "str", "default": "", "no_log": False},
            "secret_access_key": {"type": "str", "default": "", "no_log": True},
        },
        supports_check_mode=True,
    )
    if boto3 is None:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    try:
        result = run(module)
    except (BotoCoreError, ClientError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        for key in ("access_key_id", "secret_access_key"):
            if module.params[key]:
                message = message.replace(module.params[key], f"<{key}>")
        module.fail_json(msg=f"S3 bucket of {module.params['location']}: {message}",
                         bucket=urlsplit(module.params["location"]).netloc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
