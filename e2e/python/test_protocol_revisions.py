"""rsession-mcp through the official Python MCP SDK at both protocol revisions it speaks.

The SDK (mcp 2.3) chooses the revision with `Client(mode=...)` (mcp/client/client.py):
  * mode="legacy" forces the initialize handshake; the client offers
    LATEST_HANDSHAKE_VERSION, 2025-11-25.
  * mode="auto" (the default) probes `server/discover` at LATEST_MODERN_VERSION,
    2026-07-28, adopts it when the server advertises it and falls back to
    initialize otherwise (mcp/client/_probe.py). We use "auto" for 2026-07-28
    and assert the probe was sent and answered (negotiated 2026-07-28, no
    initialize on the wire), so a server that fails server/discover fails here
    instead of being silently downgraded.
  * mode="2026-07-28" adopts the revision with no probe at all; one test covers it.

Every combination of revision x transport (stdio, streamable HTTP) runs the same
scenarios: tools with titles and annotations, state across calls, an R error as a
normal result, a bad argument as an invalid_argument tool error, cancellation
from the client, progress notifications while R runs, child-process output in
order with R's own, workspace files as resources, and a 60 MB file read through
the pager. Tasks are tested with rmcp's client (crates/rsession-mcp/tests/
long_calls.rs): this SDK's client has no API for them. Needs R and Rserve, like
test_mcp_sdk.py.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import BIN, ENV, http_server

ARGS = ["--interrupt-grace-secs", "1"]
# revision -> the Client mode that reaches it
REVISIONS = {"2025-11-25": "legacy", "2026-07-28": "auto"}
ANNOTATIONS = ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint")
STEPS = "for (i in 1:6) { cat(sprintf('step %d of 6\\n', i)); Sys.sleep(1) }"



class Endpoint:
    """A fresh server: `transport()` opens a new SDK transport to it, recording what the client sends."""

    def __init__(self, kind: str, url: str | None = None):
        self.kind = kind
        self.url = url
        self.base = url.removesuffix("/mcp") if url else None

    def transport(self) -> "Recording":
        if self.kind == "stdio":
            return Recording(stdio_client(StdioServerParameters(command=BIN, args=ARGS, env=ENV)))
        return Recording(streamable_http_client(self.url))

    def metrics(self) -> str | None:
        if self.base is None:
            return None
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as r:
            return r.read().decode()


class Recording:
    """Wraps an SDK transport; keeps every JSON-RPC message the client hands to it.

    This sits above the transport, so it sees what the SDK's dispatcher emits (for
    example its `notifications/cancelled`) even where the transport then turns that
    into something else on the wire (see the cancellation test)."""

    def __init__(self, inner):
        self.inner = inner
        self.sent: list = []

    async def __aenter__(self):
        read, write = await self.inner.__aenter__()
        return read, _RecordingWrite(write, self.sent)

    async def __aexit__(self, *exc):
        return await self.inner.__aexit__(*exc)

    def methods(self) -> list[str]:
        return [m.method for m in self.sent if getattr(m, "method", None)]


class _RecordingWrite:
    def __init__(self, inner, sent: list):
        self._inner = inner
        self._sent = sent

    async def send(self, item, /) -> None:
        self._sent.append(item.message)
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture(params=["stdio", "http"])
def endpoint(request):
    if request.param == "stdio":
        yield Endpoint("stdio")
        return
    with http_server(ARGS) as base:
        yield Endpoint("http", f"{base}/mcp")


@pytest.fixture(params=list(REVISIONS))
def revision(request) -> str:
    return request.param


def connect(endpoint: Endpoint, revision: str) -> tuple[Client, Recording]:
    transport = endpoint.transport()
    return Client(transport, mode=REVISIONS[revision]), transport


def check_negotiated(client: Client, transport: Recording, revision: str) -> None:
    assert client.protocol_version == revision
    sent = transport.methods()
    if revision == "2026-07-28":
        assert sent[0] == "server/discover", sent
        assert "initialize" not in sent, sent
    else:
        assert sent[:2] == ["initialize", "notifications/initialized"], sent
        assert "server/discover" not in sent, sent


@contextlib.asynccontextmanager
async def negotiated(endpoint: Endpoint, revision: str, seconds: float):
    """An SDK client connected at `revision`, its negotiation checked (`check_negotiated`), with
    its transport; connecting, the caller's use and closing are bounded by `seconds` together."""
    client, transport = connect(endpoint, revision)
    with anyio.fail_after(seconds):
        async with client:
            check_negotiated(client, transport, revision)
            yield client, transport


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def run(client: Client, sid: str, code: str, **kw):
    return await client.call_tool("execute_in_session", {"session_id": sid, "code": code}, **kw)


async def new_session(client: Client) -> str:
    created = await client.call_tool("create_session", {})
    assert not created.is_error, text_of(created)
    return created.structured_content["session_id"]


@pytest.mark.anyio
async def test_basics(endpoint, revision):
    async with negotiated(endpoint, revision, 120) as (client, _):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        run_r = tools["execute_in_session"]
        assert run_r.title == "Run R code"
        assert run_r.annotations is not None
        assert run_r.annotations.read_only_hint is False
        assert run_r.annotations.destructive_hint is True
        assert tools["list_sessions"].annotations.read_only_hint is True
        for name, tool in tools.items():
            assert tool.title, name
            assert tool.annotations is not None, name
            for hint in ANNOTATIONS:
                assert getattr(tool.annotations, hint) is not None, (name, hint)

        sid = await new_session(client)
        r = await run(client, sid, "x <- 41")
        assert not r.is_error, text_of(r)
        r = await run(client, sid, "x + 1")
        assert not r.is_error, text_of(r)
        assert text_of(r) == "[1] 42\n"

        r = await run(client, sid, "stop('boom')")
        assert not r.is_error, "an R error is a result, not a tool failure"
        assert r.structured_content["status"] == "error"
        assert text_of(r) == "Error: boom\n"

        r = await client.call_tool("execute_in_session", {"session_id": 7, "code": []})
        assert r.is_error
        body = json.loads(text_of(r))
        assert body["code"] == "invalid_argument", body
        assert set(body) >= {"code", "message", "retryable", "details"}

        # the session survived all of that
        r = await run(client, sid, "x")
        assert text_of(r) == "[1] 41\n"


async def wait_busy(client: Client, sid: str) -> None:
    """Until list_sessions reports the session busy (bounded by the caller's deadline)."""
    while True:
        sessions = (await client.call_tool("list_sessions", {})).structured_content["sessions"]
        if any(s["session_id"] == sid and s["busy"] for s in sessions):
            return
        await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_cancel(endpoint, revision):
    """Cancelling the SDK's task is the SDK's way to cancel a request.

    Its dispatcher then emits notifications/cancelled for the request (asserted below,
    at both revisions). On stdio, and on HTTP at 2025-11-25, that notification goes on
    the wire. On HTTP at 2026-07-28 the SDK's transport does not send it: that wire has
    no client-to-server notifications, so it aborts the request's POST instead
    (mcp/client/streamable_http.py, _consume_modern_cancellation) and the closed
    response stream is the cancellation. Either way the server must interrupt R so the
    session takes the next call at once.
    """
    async with negotiated(endpoint, revision, 60) as (client, transport):
        sid = await new_session(client)
        assert not (await run(client, sid, "x <- 41")).is_error

        result = []
        async with anyio.create_task_group() as tg:

            async def sleeper():
                result.append(await run(client, sid, "Sys.sleep(60)"))

            tg.start_soon(sleeper)
            with anyio.fail_after(10):
                await wait_busy(client, sid)
            tg.cancel_scope.cancel()
        assert result == [], "the cancelled call must not have completed"

        calls = [m for m in transport.sent if getattr(m, "method", None) == "tools/call"]
        sleep_call = next(m for m in calls if m.params["arguments"].get("code") == "Sys.sleep(60)")
        cancels = [m for m in transport.sent if getattr(m, "method", None) == "notifications/cancelled"]
        assert [c.params["requestId"] for c in cancels] == [sleep_call.id], cancels

        t = time.monotonic()
        r = await run(client, sid, "x + 1")
        elapsed = time.monotonic() - t
        assert not r.is_error, text_of(r)
        assert text_of(r) == "[1] 42\n"
        assert elapsed < 2, elapsed
        sessions = (await client.call_tool("list_sessions", {})).structured_content["sessions"]
        assert [s["busy"] for s in sessions if s["session_id"] == sid] == [False]

    metrics = endpoint.metrics()
    if metrics is not None:
        # the server counted the interrupted call as cancelled (not as a timeout or ok)
        assert 'rsession_mcp_tool_calls_total{tool="execute_in_session",outcome="cancelled"} 1' in metrics, metrics


@pytest.mark.anyio
async def test_progress(endpoint, revision):
    async with negotiated(endpoint, revision, 60) as (client, _):
        sid = await new_session(client)
        seen: list[tuple[float, float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((time.monotonic(), progress, total, message))

        r = await run(client, sid, STEPS, progress_callback=on_progress)
        done = time.monotonic()
        assert not r.is_error, text_of(r)
        assert text_of(r) == "".join(f"step {i} of 6\n" for i in range(1, 7))

    # The SDK runs progress callbacks as tasks, so the last one may land just after the result.
    assert len([at for at, *_ in seen if at < done]) >= 2, (done, seen)
    messages = [m for *_, m in seen]
    assert all(m is not None and m.startswith("R running") for m in messages), messages
    assert any("last output: step" in m for m in messages), messages
    progress = [p for _, p, _, _ in seen]
    assert progress == sorted(progress) and len(set(progress)) == len(progress), progress


@pytest.mark.anyio
async def test_pinned_modern_revision_without_probe(endpoint):
    """mode='2026-07-28' adopts the revision without server/discover: every request
    carries its own protocol version envelope and the server must accept that cold."""
    transport = endpoint.transport()
    with anyio.fail_after(60):
        async with Client(transport, mode="2026-07-28") as client:
            assert client.protocol_version == "2026-07-28"
            sid = await new_session(client)
            assert not (await run(client, sid, "x <- 41")).is_error
            r = await run(client, sid, "x + 1")
            assert text_of(r) == "[1] 42\n"
    sent = transport.methods()
    assert "server/discover" not in sent and "initialize" not in sent, sent


# The first rows of the 58.4 MB file below, to check that pages join up.
ROWS = "".join(f"row {i:07d} {'x' * 60}\n" for i in range(1, 1001))
# The server's default result size limit (--max-result-bytes); the SDK's streamable HTTP
# client refuses any server-sent event over 1 MiB, which ended its whole session before.
MAX_RESULT_BYTES = 512 * 1024


@pytest.mark.anyio
async def test_child_output_resources_and_paging(endpoint, revision):
    async with negotiated(endpoint, revision, 120) as (client, _):
        sid = await new_session(client)

        r = await run(client, sid, "cat('before\\n'); system('echo hi'); cat('after\\n')")
        assert not r.is_error, text_of(r)
        assert text_of(r) == "before\nhi\nafter\n"

        r = await run(
            client,
            sid,
            "writeLines(c('a,b', '1,2'), 'small.csv'); "
            "writeLines(sprintf('row %07d %s', 1:800000, strrep('x', 60)), 'big.txt'); "
            "file.size('big.txt')",
        )
        assert text_of(r) == "[1] 58400000\n", text_of(r)

        uri = f"rsession://sessions/{sid}/files/small.csv"
        listed = await client.list_resources(cache_mode="bypass")
        assert uri in [str(x.uri) for x in listed.resources], listed
        read = await client.read_resource(uri, cache_mode="bypass")
        assert [c.text for c in read.contents] == ["a,b\n1,2\n"], read

        r = await client.call_tool("read_session_file", {"session_id": sid, "path": "big.txt"})
        assert not r.is_error, text_of(r)
        assert len(r.model_dump_json(by_alias=True)) <= MAX_RESULT_BYTES
        first = text_of(r)
        pager = r.structured_content["pager"]
        assert pager["page"] == 1 and pager["pages"] > 1, pager
        assert first.startswith(ROWS[:1000]), first[:200]

        r = await client.call_tool("read_output", {"handle": pager["handle"]})
        assert not r.is_error, text_of(r)
        assert len(r.model_dump_json(by_alias=True)) <= MAX_RESULT_BYTES
        offset = r.structured_content["offset_chars"]
        assert r.structured_content["page"] == 2 and offset > 0, r.structured_content
        assert text_of(r).startswith(ROWS[offset : offset + 1000]), text_of(r)[:200]

        # the session still answers after megabytes went through the pager
        r = await run(client, sid, "nchar(readLines('small.csv', 1))")
        assert text_of(r) == "[1] 3\n"
