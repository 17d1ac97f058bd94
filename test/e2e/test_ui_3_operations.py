"""Operations clicked in the temboard UI: what the page shows and what PostgreSQL did.

The table page polls each /scheduled list every 5 s and reloads the table's figures
when a list gets shorter; the agent keeps finished operations listed for
``finished_visible`` seconds so the page sees them end.
"""

from __future__ import annotations

from devsupport.ui_harness import DB, SCHEMA

ANALYZE_LIST = "#collapseScheduledAnalyzes"
VACUUM_LIST = "#collapseScheduledVacuums"
APPLY = ".modal.show .modal-footer .btn-primary"


def stats(stack, table: str) -> dict:
    ((vacuums, last_vacuum, analyzes, last_analyze),) = stack.sql(
        "SELECT vacuum_count, last_vacuum, analyze_count, last_analyze"
        " FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
        (SCHEMA, table),
    )
    return {
        "vacuum_count": vacuums,
        "last_vacuum": last_vacuum,
        "analyze_count": analyzes,
        "last_analyze": last_analyze,
    }


def relfilenode(stack, index: str) -> int:
    ((node,),) = stack.sql(
        "SELECT c.relfilenode FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (SCHEMA, index),
    )
    return node


def content(browser, selector: str) -> str:
    """Text of an element, collapsed or not, whitespace normalised."""
    text = browser.driver.execute_script(
        "var el = document.querySelector(arguments[0]); return el ? el.textContent : null;",
        selector,
    )
    return " ".join(text.split()) if text is not None else ""


def expand(browser, selector: str) -> None:
    """Click a list's "N scheduled ..." link; wait until the list is shown."""
    browser.click(f"a[href='{selector}']")
    browser.wait(
        lambda: browser.driver.execute_script(
            "var el = document.querySelector(arguments[0]);"
            "return !!el && el.classList.contains('show');",
            selector,
        ),
        what=f"{selector} shown",
    )


def open_table(browser, stack, table: str) -> None:
    browser.get(stack.page(DB, SCHEMA, table))
    browser.wait_loaded()
    browser.dialogs()
    # set on this document only: still there at the end means the page never reloaded
    browser.driver.execute_script("window.__same_document = true;")


def index_row(browser, index: str):
    return browser.wait(
        lambda: next(
            (
                tr
                for tr in browser.css("#app table.table-query tbody tr")
                if tr.text.startswith(f"{index} (")
            ),
            None,
        ),
        what=f"the row of index {index}",
    )


def history(stack, kind: str, op_id: str) -> dict:
    return stack.api(f"/maintenance/{kind}/{op_id}")


def listed_ids(browser, field: str) -> list[str]:
    return browser.vue(f"vm.{field}.map(function (op) {{ return op.id; }})")


def test_vacuum_now_refreshes_the_table_page(agent_session, stack):
    browser = agent_session
    open_table(browser, stack, "orders")
    before = stats(stack, "orders")
    assert f"{before['vacuum_count']} vacuums -" in browser.text("#app")

    browser.click("button[data-target='#vacuumModal']")
    browser.wait_dialog_shown("#vacuumModal")
    assert browser.one("#vacuumNow").is_selected(), "Now is the default"
    browser.click(APPLY)
    browser.wait_dialogs_closed()

    # The page lists the operation: running or already done.
    link = browser.wait(
        lambda: (el := browser.visible(f"a[href='{VACUUM_LIST}']")) and el.text,
        what="the scheduled vacuums link",
    )
    assert link == "1 scheduled vacuums"
    expand(browser, VACUUM_LIST)
    listed = browser.wait(
        lambda: (t := content(browser, VACUUM_LIST)) and ("done" in t or "in progress" in t) and t,
        what="the operation's status in the list",
    )
    assert listed.startswith(f"VACUUM {SCHEMA}.orders"), listed
    (op_id,) = listed_ids(browser, "scheduledVacuums")
    browser.wait(lambda: content(browser, VACUUM_LIST).endswith("done"), what="done")
    browser.screenshot("09-table-vacuum-listed")
    assert history(stack, "vacuum", op_id)["status"] == "done"

    # PostgreSQL ran it once.
    after = stats(stack, "orders")
    assert after["vacuum_count"] == before["vacuum_count"] + 1
    assert after["last_vacuum"] is not None and after["last_vacuum"] != before["last_vacuum"]

    # The page refreshes its figures by itself once the operation leaves the list.
    browser.wait(
        lambda: f"{after['vacuum_count']} vacuums -" in browser.text("#app"),
        timeout=90,
        what="the new vacuum count on the page",
    )
    api = stack.api(f"/maintenance/{DB}/schema/{SCHEMA}/table/orders")
    assert browser.vue("vm.getLatestVacuum().date") == api["last_vacuum"]
    assert f"(~ {api['n_dead_tup']} dead)" in browser.text("#app")
    assert "Last VACUUM:" in browser.text("#app")
    # shown relative to now ("a few seconds ago", "a minute ago" on a slow machine)
    assert browser.text("#app").split("Last VACUUM:")[1].split("\n")[0].rstrip().endswith(" ago")
    assert browser.driver.execute_script("return window.__same_document === true;")
    assert browser.visible(f"a[href='{VACUUM_LIST}']") is None, "the list is empty again"
    browser.screenshot("10-table-vacuum-refreshed")
    assert browser.dialogs() == []


def test_analyze_scheduled_then_canceled(agent_session, stack):
    browser = agent_session
    open_table(browser, stack, "customers")
    before = stats(stack, "customers")

    browser.click("button[data-target='#analyzeModal']")
    browser.wait_dialog_shown("#analyzeModal")
    browser.click("#analyzeScheduled")
    browser.click("#analyzeScheduledTime")  # opens the date picker
    browser.wait(lambda: browser.visible(".daterangepicker .applyBtn"), what="the date picker")
    browser.driver.execute_script(
        "var picker = $('#analyzeScheduledTime').data('daterangepicker');"
        "picker.setStartDate(moment().add(1, 'hours')); picker.setEndDate(picker.startDate);"
    )
    browser.click(".daterangepicker .applyBtn")
    when = browser.vue("vm.analyzeScheduledTime.clone().utc().format('YYYY-MM-DDTHH:mm:ss[Z]')")
    browser.click(APPLY)
    browser.wait_dialogs_closed()

    link = browser.wait(
        lambda: (el := browser.visible(f"a[href='{ANALYZE_LIST}']")) and el.text,
        what="the scheduled analyzes link",
    )
    assert link == "1 scheduled analyzes"
    expand(browser, ANALYZE_LIST)
    cancel = browser.wait(
        lambda: browser.visible(f"{ANALYZE_LIST} button"), what="the Cancel button"
    )
    assert cancel.text == "Cancel"
    listed = content(browser, ANALYZE_LIST)
    assert listed == f"ANALYZE {SCHEMA}.customers scheduled in an hour Cancel", listed
    (op_id,) = listed_ids(browser, "scheduledAnalyzes")
    item = history(stack, "analyze", op_id)
    assert (item["status"], item["datetime"], item["table"]) == ("todo", when, "customers")
    browser.screenshot("11-table-analyze-scheduled")

    cancel.click()
    browser.wait(
        lambda: (
            browser.visible(f"{ANALYZE_LIST} button") is None
            and (content(browser, ANALYZE_LIST) in ("", f"ANALYZE {SCHEMA}.customers canceled"))
        ),
        what="the operation canceled on the page",
    )
    browser.screenshot("12-table-analyze-canceled")
    assert history(stack, "analyze", op_id)["status"] == "canceled"
    assert stats(stack, "customers") == before, "an ANALYZE ran"
    assert browser.dialogs() == []


def test_reindex_index_from_the_table_page(agent_session, stack):
    browser = agent_session
    open_table(browser, stack, "orders")
    node = relfilenode(stack, "orders_customer_idx")
    row = index_row(browser, "orders_customer_idx")
    row.find_element("css selector", "button[data-target='#reindexModal']").click()
    browser.wait_dialog_shown("#reindexModal")
    assert browser.vue("[vm.reindexElementType, vm.reindexElementName]") == [
        "index",
        "orders_customer_idx",
    ]
    assert browser.one("#reindexNow").is_selected()
    browser.click(APPLY)
    browser.wait_dialogs_closed()

    status = browser.wait(
        lambda: (
            (t := index_row(browser, "orders_customer_idx").text.split("\n")[-1])
            in ("done", "in progress")
            and t
        ),
        what="the operation's status in the index row",
    )
    browser.wait(
        lambda: index_row(browser, "orders_customer_idx").text.endswith("done"),
        what="done in the index row",
    )
    browser.screenshot("13-table-reindex-index")
    assert status in ("done", "in progress")
    assert relfilenode(stack, "orders_customer_idx") != node, "the index was not rebuilt"
    (op_id,) = [
        op["id"]
        for op in browser.vue("vm.scheduledReindexes")
        if op["index"] == "orders_customer_idx"
    ]
    assert history(stack, "reindex", op_id)["status"] == "done"
    assert browser.dialogs() == []


def test_failed_operation_shows_in_the_list(agent_session, stack):
    """REINDEX of a unique index whose IMMUTABLE function changed: PostgreSQL refuses."""
    browser = agent_session
    open_table(browser, stack, "coupons")
    node = relfilenode(stack, "coupons_key_idx")
    row = index_row(browser, "coupons_key_idx")
    row.find_element("css selector", "button[data-target='#reindexModal']").click()
    browser.wait_dialog_shown("#reindexModal")
    browser.click(APPLY)
    browser.wait_dialogs_closed()
    browser.wait(
        lambda: index_row(browser, "coupons_key_idx").text.endswith("failed"),
        what="failed in the index row",
    )
    browser.screenshot("14-table-reindex-failed")
    (op,) = [op for op in browser.vue("vm.scheduledReindexes") if op["index"] == "coupons_key_idx"]
    item = history(stack, "reindex", op["id"])
    assert item["status"] == "failed"
    assert "could not create unique index" in item["error"], item
    assert relfilenode(stack, "coupons_key_idx") == node
    assert browser.dialogs() == []  # the POST was accepted: the list tells the outcome
