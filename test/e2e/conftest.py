"""Fixtures of the end-to-end tests: one PostgreSQL + agent + temboard UI + Chromium
for the whole run, torn down at the end (or when pytest-timeout interrupts a test).

Outside CI a missing prerequisite (Python 3.11, Chromium, chromedriver, selenium, the
UI's virtualenv that dev/setup.sh builds) skips these tests with the reason; in CI
(``CI=true``) it fails them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from devsupport import ui_harness

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"end-to-end prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ui_venv() -> Path:
    """The UI's virtualenv, created with its pinned requirements when missing."""
    venv = ui_harness.ui_venv_dir()
    try:
        ui_harness.check_browser()
        ui_harness.ensure_ui_venv(venv)
    except ui_harness.MissingPrerequisite as exc:
        _unavailable(str(exc))
    return venv


@pytest.fixture(scope="session")
def stack(ui_venv):
    """PostgreSQL with the ``e2e_shop`` database, this agent, the temboard UI."""
    with ui_harness.running_stack(venv=ui_venv) as running:
        yield running


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory) -> Path:
    """Screenshots: $E2E_SCREENSHOTS, else a directory under pytest's temporary root."""
    env = os.environ.get("E2E_SCREENSHOTS")
    path = Path(env) if env else tmp_path_factory.mktemp("e2e-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser(stack, shots_dir):
    profile = Path(tempfile.mkdtemp(prefix="tb-e2e-chromium-"))
    try:
        drv = ui_harness.Browser(profile / "profile", shots_dir)
    except ui_harness.MissingPrerequisite as exc:
        shutil.rmtree(profile, ignore_errors=True)
        _unavailable(str(exc))
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
        print(f"\ne2e screenshots: {shots_dir}")


@pytest.fixture
def page(browser):
    """The browser, checked after the test for alerts the test did not expect."""
    browser.dialogs()
    yield browser


@pytest.fixture
def logged_in(browser, stack):
    """The browser with a UI session (admin)."""
    if not browser.driver.get_cookie("temboard"):
        ui_harness.ui_login(browser, stack)
    return browser


def _registered(stack) -> bool:
    rows = stack.sql(
        "SELECT 1 FROM application.instances WHERE agent_address = '127.0.0.1' AND agent_port = %s",
        (stack.agent.port,),
        dbname="temboard",
    )
    return bool(rows)


@pytest.fixture
def registered(logged_in, stack):
    """The agent is an instance of the UI (registered through the settings page)."""
    if not _registered(stack):
        ui_harness.register_agent(logged_in, stack)
        logged_in.wait(lambda: _registered(stack), what="the instance to be saved")
    return logged_in


@pytest.fixture
def agent_session(registered, stack):
    """The browser logged in to the agent through the UI."""
    cookie = f"temboard_127.0.0.1_{stack.agent.port}"
    if not registered.driver.get_cookie(cookie):
        ui_harness.agent_login(registered, stack, stack.agent.password, then=stack.page())
        registered.wait(
            lambda: registered.driver.get_cookie(cookie), what="the agent session cookie"
        )
    return registered


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and browser is not None:
        try:
            path = browser.screenshot(f"FAILED-{item.name}")
            report.sections.append(("e2e screenshot", str(path)))
        except Exception as exc:  # the browser itself may be the failure
            report.sections.append(("e2e screenshot", f"none: {exc!r}"))
    return report
