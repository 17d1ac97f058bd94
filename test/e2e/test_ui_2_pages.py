"""The maintenance pages show the agent's figures (compared with its API)."""

from __future__ import annotations

from devsupport.ui_harness import DB, SCHEMA


def js(value) -> str:
    """A JSON number as the page prints it (JavaScript drops ".0")."""
    return str(int(value)) if float(value).is_integer() else str(value)


def row(browser, selector: str, name: str) -> str:
    """Text of the first row under ``selector`` whose first cell is ``name``."""
    return browser.wait(
        lambda: next(
            (
                tr.text
                for tr in browser.css(selector)
                if tr.find_elements("css selector", "td")
                and tr.find_elements("css selector", "td")[0].text.split("\n")[0].strip() == name
            ),
            None,
        ),
        what=f"a row for {name} in {selector}",
    )


def open_page(browser, url: str, shot: str) -> None:
    browser.console_errors()  # forget earlier pages' messages
    browser.get(url)
    browser.wait_loaded()
    browser.screenshot(shot)
    assert browser.dialogs() == [], "the page alerted an error"
    assert browser.console_errors() == []


def test_instance_page(agent_session, stack):
    open_page(agent_session, stack.page(), "05-instance")
    api = stack.api("/maintenance")
    shop = next(d for d in api["databases"] if d["datname"] == DB)
    text = row(agent_session, "#app table tbody tr", DB)
    for value in (shop["total_size"], shop["tables_size"], shop["indexes_size"]):
        assert value in text, (value, text)
    cells = text.split()
    assert js(shop["n_tables"]) in cells and js(shop["n_indexes"]) in cells, text
    assert f"Databases ({len(api['databases'])})" in agent_session.text()
    assert agent_session.text("#app h3").startswith("Size: ")


def test_database_page(agent_session, stack):
    open_page(agent_session, stack.page(DB), "06-database")
    api = stack.api(f"/maintenance/{DB}")
    sales = next(s for s in api["schemas"] if s["name"] == SCHEMA)
    assert agent_session.text("#app h3") == f"Database: {DB}\nSize: {api['total_size']}"
    text = row(agent_session, "#app table tbody tr", SCHEMA)
    for value in (sales["total_size"], sales["tables_size"], sales["indexes_size"]):
        assert value in text, (value, text)
    cells = text.split()
    assert js(sales["n_tables"]) in cells and js(sales["n_indexes"]) in cells, text
    assert f"Schemas ({len(api['schemas'])})" in agent_session.text()


def test_schema_page(agent_session, stack):
    open_page(agent_session, stack.page(DB, SCHEMA), "07-schema")
    api = stack.api(f"/maintenance/{DB}/schema/{SCHEMA}")
    orders = next(t for t in api["tables"] if t["name"] == "orders")
    text = row(agent_session, "#app table:not(.table-query) tbody tr", "orders")
    for value in (orders["total_size"], orders["table_size"], orders["index_size"]):
        assert value in text, (value, text)
    index = next(i for i in api["indexes"] if i["name"] == "orders_customer_idx")
    text = row(agent_session, "#app table.table-query tbody tr", "orders_customer_idx (btree)")
    assert index["total_size"] in text and index["def"] in text, (index, text)
    assert f"Tables ({len(api['tables'])})" in agent_session.text()
    assert f"Indexes ({len(api['indexes'])})" in agent_session.text()


def test_table_page(agent_session, stack):
    open_page(agent_session, stack.page(DB, SCHEMA, "orders"), "08-table")
    api = stack.api(f"/maintenance/{DB}/schema/{SCHEMA}/table/orders")
    text = agent_session.text("#app")
    assert "Table: orders" in text
    assert f"{api['total_size']}\n~ {js(api['row_estimate'])} rows" in text, text
    assert f"(~ {js(api['n_dead_tup'])} dead)" in text
    assert f"{api['vacuum_count']} vacuums - {api['autovacuum_count']} auto vacuums" in text
    assert f"{api['analyze_count']} analyzes - {api['autoanalyze_count']} auto analyzes" in text
    assert f"Fill Factor\n{api['fillfactor']}%" in text
    assert f"Indexes ({len(api['indexes'])})" in text
    for index in api["indexes"]:
        assert index["def"] in text
