"""Acceptance test of the data tools through the official Python MCP SDK.

load_data / query_data / describe_data / help / read_output and the
explore_data prompt, over stdio and streamable HTTP (the `server` fixture of
test_mcp_sdk.py), on files the test makes in the session workspace with R.
Run with e2e/python/run.sh.
"""

from __future__ import annotations

import pytest

from test_mcp_sdk import call, error_body, server, text_of  # noqa: F401 (fixtures)

DATA_TOOLS = {"load_data", "query_data", "describe_data", "help", "read_output"}

MAKE_FILES = """
sales <- data.frame(
  day = as.Date("2025-01-01") + 0:7,
  shop = c("a", "b", "a", "b", "a", "c", "c", NA),
  amount = c(10, 20, 30, NA, 50, 60, 70, 80))
write.csv(sales, "sales.csv", row.names = FALSE, na = "")
openxlsx::write.xlsx(sales[1:3, ], "sales.xlsx")
writeLines(jsonlite::toJSON(sales, na = "null"), "sales.json")
con <- DBI::dbConnect(RSQLite::SQLite(), "sales.sqlite")
DBI::dbWriteTable(con, "sales", data.frame(id = 1:4, amount = c(1.5, 2.5, 3, 4)))
DBI::dbDisconnect(con)
"""


@pytest.mark.anyio
async def test_data_tools(server):  # noqa: F811 (fixture imported above)
    from mcp import Client

    async with Client(server) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert DATA_TOOLS <= tools
        sid = (await call(client, "create_session")).structured_content["session_id"]
        r = await call(client, "execute_in_session", session_id=sid, code=MAKE_FILES)
        assert r.structured_content["status"] == "ok", text_of(r)

        r = await call(client, "load_data", session_id=sid, file_path="sales.csv", name="sales")
        assert not r.is_error, text_of(r)
        s = r.structured_content
        assert (s["rows"], s["n_columns"], s["backend"]) == (8, 3, "tibble")
        cols = {c["name"]: c for c in s["columns"]}
        assert cols["day"]["type"] == "date"
        assert (cols["shop"]["missing"], cols["amount"]["missing"]) == (1, 1)
        assert s["preview"][0] == {"day": "2025-01-01", "shop": "a", "amount": 10}

        for path, fmt, rows in [("sales.xlsx", "excel", 3), ("sales.json", "json", 8), ("sales.sqlite", "sqlite", 4)]:
            r = await call(client, "load_data", session_id=sid, file_path=path, name="from_" + fmt)
            assert not r.is_error, text_of(r)
            assert (r.structured_content["format"], r.structured_content["rows"]) == (fmt, rows)

        r = await call(
            client,
            "query_data",
            session_id=sid,
            sql="SELECT shop, SUM(amount) AS total FROM sales WHERE amount > ? AND shop IS NOT NULL GROUP BY shop ORDER BY shop",
            params=[15],
        )
        assert not r.is_error, text_of(r)
        assert r.structured_content["rows"] == [
            {"shop": "a", "total": 80},
            {"shop": "b", "total": 20},
            {"shop": "c", "total": 130},
        ]
        assert r.structured_content["row_count"] == 3
        assert "130" in text_of(r)

        r = await call(client, "describe_data", session_id=sid, name="sales")
        amount = next(c for c in r.structured_content["columns"] if c["name"] == "amount")
        assert amount["numeric"]["p50"] == 50 and amount["missing"] == 1
        shop = next(c for c in r.structured_content["columns"] if c["name"] == "shop")
        assert shop["categorical"]["top_values"][:2] == ["a", "b"]

        r = await call(client, "execute_in_session", session_id=sid, code="sales_glimpse()")
        assert "Rows: 8" in text_of(r)

        body = error_body(await call(client, "load_data", session_id=sid, file_path="sales.csv", name="sqlite_x"))
        assert body["code"] == "invalid_argument" and "reserved" in body["message"]
        body = error_body(await call(client, "load_data", session_id=sid, file_path="sales.csv", name="x", backend="duckdb"))
        assert body["code"] == "invalid_argument" and "'duckdb'" in body["message"]

        r = await call(client, "help", session_id=sid, topic="filter", package="dplyr")
        assert not r.is_error and "filter(" in text_of(r)

        # a long output is paged; search finds a line and names its page
        r = await call(
            client,
            "execute_in_session",
            session_id=sid,
            code="for (i in 1:20000) cat(sprintf('row %05d\\n', i))",
            limits={"max_output_bytes": 1000000},
        )
        pager = r.structured_content["pager"]
        assert pager["pages"] > 7 and len(text_of(r)) < 16000 + 400
        # 10-character lines, 1600 a page: row 10000 is on page 7
        r = await call(client, "read_output", handle=pager["handle"], search="row 10000")
        assert r.structured_content["pages_with_matches"] == [7]

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "explore_data" in prompts
        p = await client.get_prompt("explore_data", {"file_path": "sales.csv", "topic": "which shop sells most"})
        assert "sales.csv" in p.messages[0].content.text
