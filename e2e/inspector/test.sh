#!/usr/bin/env bash
# Drives rsession-mcp over stdio with the MCP Inspector CLI (@modelcontextprotocol/inspector-cli,
# pinned in package-lock.json and installed here with `npm ci`), as a user of the Inspector
# would: tools/list, tools/call of create_session and of execute_in_session on a session
# that does not exist, resources/list, resources/templates/list and prompts/list. Each
# Inspector call starts its own server.
# Prints `N passed, N failed`; exits non-zero on any failure.
#
# Usage: e2e/inspector/test.sh
# Needs: node and npm (Node 20), network to the npm registry for `npm ci`, R + Rserve, and the
# server binary: RSESSION_MCP_BIN, default ${CARGO_TARGET_DIR:-target}/debug/rsession-mcp.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${RSESSION_MCP_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/rsession-mcp}"
log() { echo "[inspector] $*" >&2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

passed=0 failed=0
summary() { echo "${passed} passed, ${failed} failed"; [ "$failed" -eq 0 ]; }
check() { # check <name> <command...>
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); log "PASS $name"
  else failed=$((failed + 1)); log "FAIL $name"; fi
}

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  log "node and npm are needed (Node 20)"; failed=1; summary; exit 1
fi
[ -x "$bin" ] || { log "no server binary at $bin"; failed=1; summary; exit 1; }
log "npm ci ($(node --version), npm $(npm --version))"
if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >"$out/npm-ci.log" 2>&1; then
  cat "$out/npm-ci.log" >&2; log "npm ci failed"; failed=1; summary; exit 1
fi
cli_dir="$here/node_modules/@modelcontextprotocol/inspector-cli/build"
log "inspector-cli $(node -p "require('$here/node_modules/@modelcontextprotocol/inspector-cli/package.json').version")"

# inspect <name> <inspector options...>: one Inspector CLI call against a fresh server over
# stdio; its stdout (JSON) in $out/<name>.json, its stderr in $out/<name>.err, bounded to 120 s.
# Run from the CLI's build folder: inspector-cli 1.0.3 finds its own package.json with
# fs.existsSync("../package.json") against the working directory and then import()s that path
# relative to its module, so from anywhere else it fails with "Cannot find module
# .../node_modules/@modelcontextprotocol/package.json".
inspect() {
  local name="$1"; shift
  (cd "$cli_dir" && timeout 120 node cli.js --cli -e RSESSION_LOG=warn -e RSESSION_WORKSPACE_ROOT=temp "$bin" "$@") \
    >"$out/$name.json" 2>"$out/$name.err"
  local rc=$?
  [ "$rc" -eq 0 ] || { log "$name: the Inspector exited $rc:"; grep -v '^$' "$out/$name.err" | tail -5 >&2; }
  return "$rc"
}
# json <name> <JavaScript expression of r>: true when the expression holds for $out/<name>.json;
# otherwise prints the JSON.
json() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    if (!eval(process.argv[2])) { console.error("not true: " + process.argv[2] + "\n" + JSON.stringify(r, null, 1).slice(0, 2000)); process.exit(1); }
  ' "$out/$1.json" "$2"
}

tools_list() {
  inspect tools-list --method tools/list &&
    json tools-list 'r.tools.some(t => t.name === "execute_in_session")' &&
    json tools-list 'r.tools.every(t => t.title && t.annotations && typeof t.annotations.readOnlyHint === "boolean")'
}
check "tools/list lists execute_in_session, every tool with a title and annotations" tools_list

create_session() {
  inspect create --method tools/call --tool-name create_session &&
    json create 'r.isError === false && /^rs-[0-9a-f]+$/.test(r.structuredContent.session_id)' &&
    json create 'r.content[0].text.includes(r.structuredContent.session_id)'
}
check "tools/call create_session returns a session_id" create_session

unknown_session() {
  inspect unknown --method tools/call --tool-name execute_in_session --tool-arg session_id=rs-000000000000 code=1+1 &&
    json unknown 'r.isError === true && JSON.parse(r.content[0].text).code === "session_not_found"'
}
check "tools/call execute_in_session on an unknown session is a session_not_found tool error" unknown_session

# The server answers resources/list with a list: an empty one here, because each Inspector
# call starts its own server, which has no session yet. Were it to answer "Method not found"
# instead, the Inspector would exit non-zero and this check would fail.
resources_list() {
  inspect resources --method resources/list &&
    json resources 'Array.isArray(r.resources)' &&
    log "resources/list: $(node -p "JSON.stringify(require('$out/resources.json'))")"
}
check "resources/list answers a list of resources" resources_list

# Workspace files are reachable through one URI template, which a fresh server lists.
resource_templates() {
  inspect templates --method resources/templates/list &&
    json templates 'r.resourceTemplates.some(t => t.uriTemplate === "rsession://sessions/{session_id}/files/{+path}")'
}
check "resources/templates/list gives the workspace file template" resource_templates

# The explore_data prompt, with its arguments, as an Inspector user would pick it.
prompts() {
  inspect prompts --method prompts/list &&
    json prompts 'r.prompts.some(p => p.name === "explore_data" && p.arguments.some(a => a.name === "file_path" && a.required))'
}
check "prompts/list lists explore_data with its file_path argument" prompts

summary
