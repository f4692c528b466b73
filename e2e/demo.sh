#!/usr/bin/env bash
# The main job, end to end, on the embedded default: installs what it needs,
# builds rsession-mcp, and runs a scripted MCP client (rmcp) that starts the
# server over stdio with its embedded local Rserve, writes a CSV into a
# session, summarises it with dplyr, draws a ggplot (saved as PNG), and prints
# what an R user would see.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "[demo] (1/3) dependencies" >&2
e2e/install-deps.sh
echo "[demo] (2/3) building rsession-mcp and the demo client" >&2
cargo build --locked -p rsession-mcp --bin rsession-mcp --example demo 2>&1 | tail -1
target="${CARGO_TARGET_DIR:-$PWD/target}/debug"
echo "[demo] (3/3) running the scripted MCP session" >&2
RSESSION_MCP_BIN="$target/rsession-mcp" exec "$target/examples/demo" "$@"
