"""``python -m mlflow_ansible``: the same as the ``mlflow-ansible`` command."""

from __future__ import annotations

import sys

from mlflow_ansible.cli import main

if __name__ == "__main__":
    sys.exit(main())
