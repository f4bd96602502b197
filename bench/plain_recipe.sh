#!/usr/bin/env bash
# The "plain recipe" the benchmark compares against: MLflow on a Debian VM as the blog posts
# write it. Runs inside the `plain` VM (docker exec -i VM bash -s -- PHASE ... < plain_recipe.sh).
#   install                      apt python3-pip python3-venv; a venv; pip install mlflow psycopg2-binary google-cloud-storage
#   start BACKEND_URI DEST       mlflow server --backend-store-uri ... --artifacts-destination ... --host 0.0.0.0
#                                (in a transient systemd unit, mlflow-plain, so its memory can be read like ours)
#   stop
# Test-machine only: pip trusts the proxy CA (PIP_CERT) and google-cloud-storage talks to the GCS
# stand-in (STORAGE_EMULATOR_HOST); the multipart threshold is set on the server side like ours.
set -euo pipefail
phase=$1
shift
case "$phase" in
  install)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-pip python3-venv >/dev/null
    python3 -m venv /opt/mlflow-venv
    PIP_CERT=${PIP_CERT:-} /opt/mlflow-venv/bin/pip install --quiet --disable-pip-version-check \
      mlflow psycopg2-binary google-cloud-storage
    /opt/mlflow-venv/bin/mlflow --version
    ;;
  start)
    systemctl reset-failed mlflow-plain 2>/dev/null || true
    systemd-run --quiet --unit mlflow-plain --property=Restart=no \
      --setenv=STORAGE_EMULATOR_HOST="${STORAGE_EMULATOR_HOST:-}" \
      --setenv=MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE="${MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE:-524288000}" \
      /opt/mlflow-venv/bin/mlflow server --backend-store-uri "$1" --artifacts-destination "$2" --host 0.0.0.0
    ;;
  stop)
    systemctl stop mlflow-plain 2>/dev/null || true
    systemctl reset-failed mlflow-plain 2>/dev/null || true
    ;;
  *)
    echo "unknown phase $phase" >&2
    exit 2
    ;;
esac
