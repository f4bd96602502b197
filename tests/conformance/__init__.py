"""Differential MLflow client conformance suite (see conftest.py)."""
