"""The temboard UI 7.11 in Chromium: UI login, registering the agent, agent login."""

from __future__ import annotations

from devsupport import ui_harness


def test_ui_login(browser, stack):
    browser.driver.delete_all_cookies()
    browser.get(stack.ui.url + "/login")
    browser.one("#inputUsername").send_keys("admin")
    browser.one("#inputPassword").send_keys("not-the-password")
    browser.click("form button[type=submit]")
    browser.wait(lambda: browser.visible(".alert-danger"), what="the UI's login error")
    assert not browser.driver.get_cookie("temboard")

    ui_harness.ui_login(browser, stack)
    browser.wait_text("Settings")
    assert browser.driver.get_cookie("temboard"), "no UI session cookie"
    browser.screenshot("01-ui-home")
    assert browser.dialogs() == []


def test_agent_registered_through_the_ui(logged_in, stack):
    """Settings > Instances > New instance: the UI discovers the agent and saves it."""
    ui_harness.register_agent(logged_in, stack)
    row = logged_in.wait(
        lambda: next(
            (
                tr.text
                for tr in logged_in.css("#tableInstances tbody tr")
                if f"127.0.0.1:{stack.agent.port}" in tr.text
            ),
            None,
        ),
        what="the agent's row in Settings > Instances",
    )
    logged_in.screenshot("02-settings-instances")
    discover = stack.api("/discover")
    # the figures the UI took from the agent's /discover
    assert discover["hostname"] in row
    assert str(discover["pg_port"]) in row
    assert discover["pg_version_summary"] in row
    assert "default" in row
    plugins = stack.sql(
        "SELECT plugin_name FROM application.plugins WHERE agent_port = %s",
        (stack.agent.port,),
        dbname="temboard",
    )
    assert plugins == [("maintenance",)]


def test_agent_login_wrong_password_shows_the_agents_error(registered, stack):
    ui_harness.agent_login(registered, stack, "wrong-password", then=stack.page())
    alert = registered.wait(
        lambda: (el := registered.visible(".alert-danger")) and el.text,
        what="the agent login error",
    )
    registered.screenshot("03-agent-login-refused")
    assert alert == "ERROR: Invalid username/password."  # the agent's own message
    assert "/login" in registered.driver.current_url
    assert not registered.driver.get_cookie(f"temboard_127.0.0.1_{stack.agent.port}")


def test_agent_login_opens_the_maintenance_pages(registered, stack):
    ui_harness.agent_login(registered, stack, stack.agent.password, then=stack.page())
    registered.wait(
        lambda: registered.driver.current_url.rstrip("/").endswith("/maintenance"),
        what="the redirection to the maintenance page",
    )
    registered.wait_loaded()
    registered.wait_text(f"Logged in as {stack.agent.username}")
    registered.wait_text(ui_harness.DB)
    registered.screenshot("04-agent-login-maintenance")
    assert registered.driver.get_cookie(f"temboard_127.0.0.1_{stack.agent.port}")
    assert registered.dialogs() == []
