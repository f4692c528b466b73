#!/usr/bin/env python3
"""The server's own CPU time per `execute_in_session` call, warm: one stdio server, one session,
one code at a time, so that the caches stay warm (unlike `mcp_roundtrip`, which calls all its
paths in turn).

Starts a release `rsession-mcp` over stdio (`--sandbox danger-full-access`, with any extra
arguments given after ROUNDS, e.g. `--audit-log off`), warms the session with 300 calls of each
code, then calls `1+1` ROUNDS times and printing `summary(lm(mpg ~ wt, mtcars))` ROUNDS times
with hand-built 2026-07-28 `tools/call` lines. Prints the p50 wall time per call and the
server's CPU time (user + system, from /proc, in clock ticks of 10 ms: use a few thousand
rounds) per call.

Usage: server_cpu_probe.py [ROUNDS] [SERVER ARGS...]   (default 3000 rounds)
The binary: as transport_probe.py ($RSESSION_MCP, else $CARGO_TARGET_DIR/release/rsession-mcp).
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transport_probe as tp  # noqa: E402  (its binary lookup, stdio calls and /proc reader)

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
CODES = {"1+1": "1+1", "printing": "print(summary(lm(mpg ~ wt, mtcars)))"}


def main():
    server = subprocess.Popen(
        [tp.BINARY, "--sandbox", "danger-full-access", *sys.argv[2:]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=tp.server_env())
    try:
        run(server)
    finally:
        server.kill()


def run(server):
    def call(tool, arguments):
        result = tp.stdio_call(server, tool, arguments)
        assert not result.get("isError"), result
        return result

    session = call("create_session", {})["structuredContent"]["session_id"]
    for _ in range(300):
        for code in CODES.values():
            call("execute_in_session", {"session_id": session, "code": code})
    print(f"| code | p50 ms | server CPU ms per call |  ({ROUNDS} calls each; args {sys.argv[2:]})")
    print("| --- | ---: | ---: |")
    for label, code in CODES.items():
        before = tp.cpu_seconds(server.pid)
        wall = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            call("execute_in_session", {"session_id": session, "code": code})
            wall.append(time.perf_counter() - started)
        cpu = (tp.cpu_seconds(server.pid) - before) / ROUNDS * 1e3
        print(f"| `{label}` | {statistics.median(wall) * 1e3:.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
