#!/usr/bin/env python3
"""Create the S3 bucket of the artifact location when it is missing.

    mlflow_s3_bucket.py --env-file /etc/mlflow/mlflow.env s3://BUCKET/PREFIX

Run with the Python of the MLflow venv (boto3). The endpoint, region and keys are
read from the server's root-only environment file, as the server reads them, so
they never appear on a command line. Prints {"bucket": ..., "created": bool}.
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlsplit

from mlflow_schema import read_env_file

KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def ensure_bucket(env: dict[str, str], bucket: str) -> bool:
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=env.get("MLFLOW_S3_ENDPOINT_URL") or None,
        region_name=env.get("AWS_DEFAULT_REGION") or None,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
    )
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = env.get("AWS_DEFAULT_REGION")
    extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region and region != "us-east-1" else {}
    try:
        client.create_bucket(Bucket=bucket, **extra)
    except ClientError as exc:  # another host made it meanwhile
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", required=True)
    parser.add_argument("location", help="s3://BUCKET[/PREFIX]")
    args = parser.parse_args(argv)
    bucket = urlsplit(args.location).netloc
    env = read_env_file(args.env_file)
    try:
        created = ensure_bucket(env, bucket)
    except Exception as exc:  # report any S3 error as JSON for the play
        message = f"{type(exc).__name__}: {exc}"
        for key in KEYS[:2]:
            if env.get(key):
                message = message.replace(env[key], f"<{key}>")
        print(json.dumps({"bucket": bucket, "error": message}))
        return 1
    print(json.dumps({"bucket": bucket, "created": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
