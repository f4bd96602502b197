"""The secure scenario's browser driver (molecule/secure/files/oidc_browser.py) does a step again only when Chromium
failed it because the host's network changed (net::ERR_NETWORK_CHANGED: Docker starting or stopping another
testbed's containers), and reports every other failure at once. The official CI failed on such a change once (a
blank UI page); these are the rules its retries follow, without a browser."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import Error as PlaywrightError

DRIVER = Path(__file__).resolve().parents[2] / "molecule" / "secure" / "files" / "oidc_browser.py"


@pytest.fixture
def driver(monkeypatch):
    spec = importlib.util.spec_from_file_location("oidc_browser", DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STEP_PAUSE_S", 0)
    return module


def failing(times: int, error, result="done"):
    calls = []

    def step():
        calls.append(len(calls))
        if len(calls) <= times:
            raise error() if callable(error) else error
        return result

    return step, calls


def test_a_step_failed_by_a_network_change_is_done_again(driver):
    step, calls = failing(2, PlaywrightError(f"Page.goto: {driver.NETWORK_CHANGED} at https://mlflow.test/"))
    assert driver.retrying(step) == "done"
    assert len(calls) == 3
    assert driver.Watch.steps_retried == 2


def test_a_fetch_that_failed_while_a_request_saw_the_change_is_done_again(driver):
    """fetch() rejects with "Failed to fetch" only; the context's requestfailed event names the change."""

    def error():
        driver.Watch.on_request_failed(SimpleNamespace(failure=driver.NETWORK_CHANGED))
        return PlaywrightError("TypeError: Failed to fetch")

    step, calls = failing(1, error, result=200)
    assert driver.retrying(step) == 200
    assert len(calls) == 2
    assert driver.Watch.changes == 1


def test_a_landing_on_chromiums_error_page_is_done_again(driver):
    step, calls = failing(1, driver.NetworkChanged("chrome-error://chromewebdata/"))
    assert driver.retrying(step) == "done"
    assert len(calls) == 2


def test_any_other_failure_is_reported_at_once(driver):
    step, calls = failing(1, PlaywrightError("Timeout 120000ms exceeded waiting for #username"))
    with pytest.raises(PlaywrightError, match="#username"):
        driver.retrying(step)
    assert len(calls) == 1
    assert driver.Watch.steps_retried == 0


def test_a_network_that_keeps_changing_fails_the_step_in_the_end(driver):
    step, calls = failing(100, PlaywrightError(driver.NETWORK_CHANGED))
    with pytest.raises(PlaywrightError):
        driver.retrying(step)
    assert len(calls) == driver.STEP_ATTEMPTS
