"""A trivial pyfunc model for the LoggedModel and registry tests (no requirement inference: that would start a
subprocess per model)."""

from __future__ import annotations

import mlflow

REQUIREMENTS = [f"mlflow=={mlflow.__version__}", "pandas"]


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n: int = 1) -> None:
        self.n = n

    def predict(self, context, model_input, params=None):
        return model_input + self.n


def log_trivial_model(name: str = "model", **kwargs):
    """Log AddN(1) with mlflow.pyfunc.log_model (inside a run when one is active); returns the ModelInfo."""
    return mlflow.pyfunc.log_model(name=name, python_model=AddN(1), pip_requirements=REQUIREMENTS, **kwargs)
