"""Acceptance test: rsession-mcp through the official Python MCP SDK (mcp on PyPI).

Runs the same scenarios over stdio (the SDK spawns the server) and over
streamable HTTP (the test starts the server with --transport http on a free
loopback port). The server starts its embedded local Rserve, so R and the
Rserve package must be installed. Run with e2e/python/run.sh.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.request

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import BIN, ENV, http_server

TOOLS = {
    "create_session",
    "execute_in_session",
    "list_sessions",
    "close_session",
    "reset_session",
    "list_session_files",
    "read_session_file",
    "write_session_file",
    "install_package",
}


@pytest.fixture(params=["stdio", "http"])
def server(request):
    """How to reach a fresh server: StdioServerParameters or the /mcp URL."""
    args = ["--interrupt-grace-secs", "1"]
    if request.param == "stdio":
        yield StdioServerParameters(command=BIN, args=args, env=ENV)
        return
    with http_server(args) as base:
        yield f"{base}/mcp"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'rsession_mcp_tool_calls_total{tool="execute_in_session"' in metrics


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def error_body(result) -> dict:
    assert result.is_error, f"expected an error result: {result}"
    body = result.structured_content or json.loads(text_of(result))
    assert set(body) >= {"code", "message", "retryable", "details"}
    return body


async def call(client, tool: str, **args):
    return await client.call_tool(tool, args)


@pytest.mark.anyio
async def test_key_scenarios(server):
    async with Client(server) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert TOOLS <= tools

        created = await call(client, "create_session")
        assert not created.is_error
        sid = created.structured_content["session_id"]

        # state persists; events come back in order
        assert not (await call(client, "execute_in_session", session_id=sid, code="x <- 41")).is_error
        r = await call(
            client,
            "execute_in_session",
            session_id=sid,
            code="cat('out\\n'); message('msg'); warning('careful'); x + 1; stop('boom')",
        )
        assert not r.is_error, "an R error is a result, not a tool failure"
        assert r.structured_content["status"] == "error"
        kinds = [e["type"] for e in r.structured_content["events"]]
        assert kinds == ["stdout", "message", "warning", "value", "error"]
        assert text_of(r) == "out\nmsg\nWarning message:\ncareful\n[1] 42\nError: boom\n"

        # a plot arrives as PNG image content
        r = await call(client, "execute_in_session", session_id=sid, code="hist(faithful$eruptions)")
        images = [c for c in r.content if getattr(c, "type", None) == "image"]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        png = base64.b64decode(images[0].data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (800, 600)

        # UTF-8 intact, special doubles print like the console
        r = await call(client, "execute_in_session", session_id=sid, code="c('é', '中文', '😀'); c(NA, NaN, Inf, -0)")
        assert text_of(r) == '[1] "é"    "中文" "😀"  \n[1]  NA NaN Inf   0\n'

        # deadline: interrupted within 4 s, state kept
        for code in ["Sys.sleep(60)", "repeat {}"]:
            t = time.monotonic()
            r = await call(client, "execute_in_session", session_id=sid, code=code, limits={"max_duration_secs": 2})
            assert error_body(r)["code"] == "execution_timeout", code
            assert time.monotonic() - t < 4, code
            r = await call(client, "execute_in_session", session_id=sid, code="x")
            assert text_of(r) == "[1] 41\n"

        # quit(): session_lost, then a fresh R that says so
        r = await call(client, "execute_in_session", session_id=sid, code="writeLines('kept', 'k.txt'); quit('no')")
        body = error_body(r)
        assert body["code"] == "session_lost" and body["retryable"] is True
        r = await call(client, "execute_in_session", session_id=sid, code="exists('x'); readLines('k.txt')")
        assert not r.is_error
        assert text_of(r).startswith("NOTE: R state was reset")
        assert text_of(r).endswith('[1] FALSE\n[1] "kept"\n')

        # files stay inside the workspace
        r = await call(client, "write_session_file", session_id=sid, path="d/a.csv", content="g,v\na,1\n")
        assert not r.is_error
        r = await call(client, "read_session_file", session_id=sid, path="d/a.csv")
        assert text_of(r) == "g,v\na,1\n"
        for bad in ["../../etc/passwd", "/etc/passwd"]:
            r = await call(client, "read_session_file", session_id=sid, path=bad)
            assert error_body(r)["code"] == "invalid_argument"

        # garbage arguments: a readable tool error, not a crash
        r = await call(client, "execute_in_session", session_id=7, code=[])
        assert error_body(r)["code"] == "invalid_argument"
        r = await call(client, "execute_in_session", session_id="rs-000000000000", code="1")
        assert error_body(r)["code"] == "session_not_found"

        r = await call(client, "close_session", session_id=sid)
        assert not r.is_error
        r = await call(client, "list_sessions")
        assert r.structured_content["sessions"] == []
