#!/usr/bin/env bash
# Run the Python MCP SDK acceptance test against rsession-mcp (stdio and streamable HTTP).
# Prerequisites: python3 with venv, R + Rserve (apt: r-base-core r-cran-rserve r-cran-ggplot2).
# Usage: e2e/python/run.sh   (builds the binary, makes e2e/python/.venv, runs pytest)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
echo "== building rsession-mcp"
(cd "$root" && cargo build -p rsession-mcp --bin rsession-mcp)
target="${CARGO_TARGET_DIR:-$root/target}"
export RSESSION_MCP_BIN="${RSESSION_MCP_BIN:-$target/debug/rsession-mcp}"
if [ ! -x "$here/.venv/bin/python" ]; then
  echo "== creating $here/.venv"
  python3 -m venv "$here/.venv"
fi
echo "== installing pinned requirements"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "== pytest"
exec "$here/.venv/bin/python" -m pytest -q "$here/test_mcp_sdk.py" "$here/test_data_tools.py" "$here/test_protocol_revisions.py" "$@"
