"""Shared by the Python SDK tests: where the server binary is, and starting it over HTTP.

`http_server(args)` starts `rsession-mcp --transport http` on a free loopback port, waits
(bounded) until `/healthz` answers, yields the base URL and stops the server afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get(
    "RSESSION_MCP_BIN",
    str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "rsession-mcp"),
)
# Workspaces in a temporary folder per server (not the per-user folder, where sessions are kept
# across restarts): tests stay independent of each other and of earlier runs.
ENV = {**os.environ, "RSESSION_LOG": "warn", "RSESSION_WORKSPACE_ROOT": "temp"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(args: list[str]):
    """A fresh server over streamable HTTP; yields its base URL (`/mcp` is the endpoint)."""
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "--transport", "http", "--listen", f"127.0.0.1:{port}", *args],
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert proc.poll() is None, "server exited during startup"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
