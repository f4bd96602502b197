"""cloudsql_proxy: bad input is rejected by the preflight play with a message naming the variable,
before the deploy play starts; good input passes. The cases (PROXY_CASES and the proxy-* hosts of GOOD
in preflight_cases.py) are hosts of the batched runs of conftest.py (site.yml --check --tags preflight)."""

from __future__ import annotations

import re

import pytest
from preflight_cases import GOOD, PROXY_CASES


@pytest.mark.parametrize(("host", "message"), [(c[0], c[2]) for c in PROXY_CASES], ids=[c[0] for c in PROXY_CASES])
def test_bad_proxy_input_is_rejected_before_any_change(bad_inputs, host, message):
    outcomes, _ = bad_inputs
    outcome = outcomes[host]
    assert re.search(message, re.sub(r"\s+", " ", outcome.message)), outcome
    assert not outcome.deployed


@pytest.mark.parametrize("host", sorted(name for name in GOOD if name.startswith("proxy-")))
def test_good_proxy_input_passes_preflight(good_inputs, host):
    """The control cases: the same runner lets valid proxy settings through to the deploy play."""
    outcomes, output = good_inputs
    assert outcomes[host].failed_task is None and outcomes[host].deployed, output[-3000:]
