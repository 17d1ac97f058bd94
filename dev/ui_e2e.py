"""The real temboard UI 7.11 in front of this agent, by hand (see dev/ui-e2e.md).

From the repository's root:

    .venv/bin/python -m dev.ui_e2e                      # the e2e tests (pytest test/e2e)
    .venv/bin/python -m dev.ui_e2e --screenshots DIR    # PNGs of the maintenance pages
    .venv/bin/python -m dev.ui_e2e --hold               # keep it running, print URL + logins

Built on ``devsupport/ui_harness.py``: PostgreSQL with the fixture database, the agent,
the UI; the agent is registered and logged in through the UI in headless Chromium.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devsupport import ui_harness

ROOT = Path(__file__).resolve().parent.parent

PAGES = (  # name, (database, schema, table)
    ("1-instance", ()),
    ("2-database", (ui_harness.DB,)),
    ("3-schema", (ui_harness.DB, ui_harness.SCHEMA)),
    ("4-table", (ui_harness.DB, ui_harness.SCHEMA, "orders")),
)


def log_in_through_the_ui(stack: ui_harness.Stack, browser: ui_harness.Browser) -> None:
    ui_harness.ui_login(browser, stack)
    ui_harness.register_agent(browser, stack)
    browser.wait(
        lambda: f"127.0.0.1:{stack.agent.port}" in browser.text("#tableInstances"),
        what="the agent registered",
    )
    ui_harness.agent_login(browser, stack, stack.agent.password, then=stack.page())
    browser.wait(lambda: browser.driver.current_url.endswith("/maintenance"), what="login")


def screenshots(stack: ui_harness.Stack, browser: ui_harness.Browser) -> None:
    for name, where in PAGES:
        browser.get(stack.page(*where))
        browser.wait_loaded()
        path = browser.screenshot(name)
        problems = browser.dialogs() + browser.console_errors()
        print(f"{path}" + (f"  (page errors: {problems})" if problems else ""), flush=True)


def hold(stack: ui_harness.Stack) -> None:
    print(
        f"temboard UI  {stack.ui.url}  (UI login {'/'.join(ui_harness.UI_ADMIN)})\n"
        f"maintenance  {stack.page()}  (agent login {stack.agent.username} / "
        f"{stack.agent.password})\n"
        f"agent        {stack.agent.url}  (key {stack.agent.key})\n"
        f"PostgreSQL   {stack.pg.dsn()}\n"
        f"work dir     {stack.workdir}  (logs: agent/agent.log, ui/temboard.log)\n"
        "Ctrl-C or SIGTERM stops everything.",
        flush=True,
    )
    while True:
        time.sleep(3600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", action="store_true", help="keep everything running")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="save page PNGs there")
    parser.add_argument("--workdir", type=Path, help="clusters, configs and logs (kept)")
    parser.add_argument(
        "--ui-venv", type=Path, default=ui_harness.ui_venv_dir(), help="default %(default)s"
    )
    args, pytest_args = parser.parse_known_args()
    if not args.hold and not args.screenshots:
        cmd = [sys.executable, "-m", "pytest", str(ROOT / "test" / "e2e"), *pytest_args]
        return subprocess.call(cmd, cwd=ROOT)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    shots = args.screenshots or Path(tempfile.mkdtemp(prefix="tb-ui-shots-"))
    profile = Path(tempfile.mkdtemp(prefix="tb-e2e-chromium-"))
    try:
        with ui_harness.running_stack(args.workdir, args.ui_venv) as stack:
            browser = ui_harness.Browser(profile / "profile", shots)
            try:
                log_in_through_the_ui(stack, browser)
                if args.screenshots:
                    screenshots(stack, browser)
            finally:
                browser.quit()
            if args.hold:
                hold(stack)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    except ui_harness.MissingPrerequisite as exc:
        print(f"missing: {exc} (see dev/setup.sh)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
