"""gunicorn's settings for JSON log lines (``mlflow server --gunicorn-opts "-c python:mlflow_ansible_gunicorn_logging
..."``, installed by the tracking_server role): gunicorn reads every name here that is one of its settings, so
this module holds nothing else. The command line's options still win over these."""

from mlflow_ansible_logging import GUNICORN_LOG_CONFIG as _LOG_CONFIG
from mlflow_ansible_logging import gunicorn_post_request as post_request
from mlflow_ansible_logging import gunicorn_post_worker_init as post_worker_init
from mlflow_ansible_logging import gunicorn_pre_request as pre_request

logconfig_dict = _LOG_CONFIG

__all__ = ["logconfig_dict", "post_request", "post_worker_init", "pre_request"]
