#!/usr/bin/env python3
"""Where the streamable HTTP transport's extra time goes: the server's side, without an MCP client
library.

Starts two release `rsession-mcp` servers (`--sandbox danger-full-access`, each with its own local
Rserve): one over stdio, one over streamable HTTP on a free loopback port. Both get the same
hand-built 2026-07-28 `tools/call` requests (`execute_in_session`), one JSON line over the pipes
and one POST over a kept-alive `http.client` connection, called in turn for `1+1` and for
`Sys.sleep(s)` with each given duration `s`, after 200 warm-up rounds. Prints p50 wall time per
transport and their difference, and each server's CPU time (user + system, from /proc) per call.

Usage: transport_probe.py [ROUNDS] [SLEEPS]   (default 500 rounds, sleeps "0.001,0.003")
The binary: $RSESSION_MCP, else $CARGO_TARGET_DIR/release/rsession-mcp, else target/release/.
TOKIO_WORKER_THREADS, when set, is passed to both servers.
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
SLEEPS = (sys.argv[2] if len(sys.argv) > 2 else "0.001,0.003").split(",")
BINARY = os.environ.get("RSESSION_MCP") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "rsession-mcp")
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "transport-probe", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env():
    env = {"RSESSION_LOG": "warn", "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    if "TOKIO_WORKER_THREADS" in os.environ:
        env["TOKIO_WORKER_THREADS"] = os.environ["TOKIO_WORKER_THREADS"]
    return env


def cpu_seconds(pid):
    # /proc/<pid>/stat fields 14 and 15 (utime, stime) in clock ticks; the name may hold spaces.
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Request:
    next_id = 0

    @classmethod
    def body(cls, tool, arguments):
        cls.next_id += 1
        return cls.next_id, json.dumps({
            "jsonrpc": "2.0", "id": cls.next_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": META}})


def stdio_call(server, tool, arguments):
    """The result of one `tools/call` sent as a JSON line to the stdio `server` (a Popen)."""
    rid, body = Request.body(tool, arguments)
    server.stdin.write((body + "\n").encode())
    server.stdin.flush()
    while True:
        message = json.loads(server.stdout.readline())
        if message.get("id") == rid:
            return message["result"]


def main():
    common = [BINARY, "--sandbox", "danger-full-access", "--audit-log", "off"]
    stdio = subprocess.Popen(common, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=server_env())
    port = free_port()
    http_server = subprocess.Popen(
        common + ["--transport", "http", "--listen", f"127.0.0.1:{port}"], env=server_env())
    try:
        run(stdio, http_server, port)
    finally:
        stdio.kill()
        http_server.kill()


def run(stdio, http_server, port):
    def over_stdio(tool, arguments):
        return stdio_call(stdio, tool, arguments)

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

    def over_http(tool, arguments):
        _, body = Request.body(tool, arguments)
        conn.request("POST", "/mcp", body, {
            "content-type": "application/json", "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": tool})
        return json.loads(conn.getresponse().read())["result"]

    transports = {"stdio": over_stdio, "http": over_http}
    sessions = {name: call("create_session", {})["structuredContent"]["session_id"]
                for name, call in transports.items()}
    codes = {"1+1": "1+1", **{f"Sys.sleep({s})": f"Sys.sleep({s})" for s in SLEEPS}}

    def one(name, code):
        started = time.perf_counter()
        result = transports[name]("execute_in_session", {"session_id": sessions[name], "code": code})
        assert not result.get("isError"), result
        return time.perf_counter() - started

    for _ in range(200):
        for code in codes.values():
            for name in transports:
                one(name, code)
    pids = {"stdio": stdio.pid, "http": http_server.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    samples = {(label, name): [] for label in codes for name in transports}
    for _ in range(ROUNDS):
        for label, code in codes.items():
            for name in transports:
                samples[(label, name)].append(one(name, code))
    calls = ROUNDS * len(codes)
    cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / calls * 1e3 for name, pid in pids.items()}

    print("| code | stdio p50 ms | HTTP p50 ms | HTTP − stdio |")
    print("| --- | ---: | ---: | ---: |")
    for label in codes:
        a = statistics.median(samples[(label, "stdio")]) * 1e3
        b = statistics.median(samples[(label, "http")]) * 1e3
        print(f"| `{label}` | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    print(f"\nServer CPU per call: stdio {cpu['stdio']:.3f} ms, HTTP {cpu['http']:.3f} ms "
          f"({calls} calls each; TOKIO_WORKER_THREADS={os.environ.get('TOKIO_WORKER_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
