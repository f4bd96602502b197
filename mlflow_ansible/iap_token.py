"""The IAP ID-token provider for MLflow clients: see mlflow_ansible_iap_token (the same objects).

It lives in a module of its own, outside this package, so that the small distribution
``mlflow-ansible-iap-token`` can ship it without the wrapper (packaging/iap-token/).
"""

from __future__ import annotations

from mlflow_ansible_iap_token import (
    _SOURCES,
    AUDIENCE_ENV,
    REFRESH_MARGIN,
    IapRequestHeaderProvider,
    IapTokenSource,
    TokenError,
)

__all__ = ["AUDIENCE_ENV", "REFRESH_MARGIN", "IapRequestHeaderProvider", "IapTokenSource", "TokenError", "_SOURCES"]
