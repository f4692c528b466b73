#!/usr/bin/env bash
# Runs RSession's whole test suite on this machine, installing what it needs:
#   1. system and Python dependencies (install-deps.sh)
#   2. the pinned Kubernetes/etcd binaries from Go modules (cached)
#   3. clippy with warnings denied, then every Rust test in the workspace
#      (unit, real Rserve, real kube-apiserver, real MCP clients)
#   4. the official Python MCP SDK acceptance tests (stdio and streamable HTTP, both protocol
#      revisions), then the MCP Inspector CLI against the server (e2e/inspector/test.sh)
#   5. a bounded fuzz run of the QAP1 decoder
#   6. the cluster e2e: the local from-source cluster (e2e/local/up.sh, NetworkPolicy enforced),
#      its smoke test, images, the Helm chart and the whole e2e suite (e2e/run-e2e.sh), then
#      the cluster down again (down.sh puts back what up.sh changed on the host)
# Ends with one summary line: "N passed, N failed". Needs root (apt, the local cluster).
# Environment: RSESSION_SKIP_CLUSTER_E2E=1 leaves out step 6 (for a machine that cannot run the
# cluster; CI never sets it, and the summary then says so).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
# log: progress on stderr, each line with the seconds since the start (CI's wall-time budget
# is 90 minutes cold; the closing lines say where the time went).
log() { echo "[test] [${SECONDS}s] $*" >&2; }
step_times=()
# cargo_results <log>: "passed failed ignored" for each of cargo test's closing lines.
cargo_results() {
  sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$1"
}
mark() { step_times+=("$1=$(( SECONDS - ${last_mark:-0} ))s"); last_mark=$SECONDS; }
logs="$(mktemp -d)"
failed_steps=()
passed=0; failed=0; ignored=0

set -e
log "(1/6) dependencies"
e2e/install-deps.sh
mark deps
log "(2/6) Kubernetes binaries (cached after the first build)"
RSESSION_K8S_BIN="$(e2e/local/build-binaries.sh | tail -1)"
export RSESSION_K8S_BIN
mark k8s-binaries
set +e

log "(3/6) clippy, then the Rust tests"
cargo clippy --workspace --all-targets --locked -- -D warnings >"$logs/clippy.log" 2>&1
clippy_rc=$?
grep -E -A8 '^(warning|error)' "$logs/clippy.log" | head -80
if [ "$clippy_rc" -eq 0 ]; then echo "clippy: clean"; else failed_steps+=("clippy"); fi

cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$logs/cargo-test.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("cargo test")
while read -r p f i; do
  passed=$((passed + p)); failed=$((failed + f)); ignored=$((ignored + i))
done < <(cargo_results "$logs/cargo-test.log")

mark rust
log "(4/6) Python MCP SDK acceptance tests, then the MCP Inspector CLI"
if [ -f e2e/python/requirements.txt ]; then
  cargo build --locked -p rsession-mcp --bins 2>&1 | tail -1
  mcp_bin="${CARGO_TARGET_DIR:-$root/target}/debug/rsession-mcp"
  RSESSION_MCP_BIN="$mcp_bin" e2e/python/.venv/bin/python -m pytest -q e2e/python 2>&1 | tee "$logs/pytest.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("pytest")
  line="$(grep -E '[0-9]+ (passed|failed)' "$logs/pytest.log" | tail -1)"
  p="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || true)"
  f="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"
  e="$(grep -oE '[0-9]+ error' <<<"$line" | grep -oE '[0-9]+' || true)"
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
  RSESSION_MCP_BIN="$mcp_bin" e2e/inspector/test.sh 2>&1 | tee "$logs/inspector.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("inspector")
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/inspector.log" | tail -1)"
  p="$(grep -oE '^[0-9]+' <<<"$line" || true)"; f="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
fi

mark python
log "(5/6) bounded fuzz run of the QAP1 decoder"
if [ -x crates/rserve/fuzz/run.sh ]; then
  if FUZZ_SECONDS="${RSESSION_FUZZ_SECONDS:-30}" crates/rserve/fuzz/run.sh 2>&1 \
      | grep -E '^(fuzzing|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY|thread .* panicked)'; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failed_steps+=("fuzz")
  fi
fi

mark fuzz
log "(6/6) cluster e2e on the local from-source cluster"
if [ "${RSESSION_SKIP_CLUSTER_E2E:-0}" = 1 ]; then
  echo "cluster e2e: LEFT OUT (RSESSION_SKIP_CLUSTER_E2E=1)"
else
  e2e_start=$(date +%s)
  # A clean cluster: a run that was killed may have left state (bridges, iptables, etcd objects).
  e2e/local/down.sh --purge >"$logs/down-before.log" 2>&1 || { cat "$logs/down-before.log"; failed_steps+=("cluster down"); }
  trap 'e2e/local/down.sh >"$logs/down-after.log" 2>&1 || cat "$logs/down-after.log"' EXIT
  if e2e/local/up.sh >"$logs/up.out" 2>"$logs/up.log"; then
    tail -3 "$logs/up.log"
    # The smoke test runs the session image; down.sh --purge removed containerd's images.
    images/build.sh r-sandbox 2>&1 | tail -2
    e2e/local/node/smoke.sh 2>&1 | tee "$logs/smoke.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("smoke")
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/smoke.log" | tail -1)"
    p="$(grep -oE '^[0-9]+' <<<"$line" || true)"; f="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
    e2e/run-e2e.sh 2>&1 | tee "$logs/e2e.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("cluster e2e")
    e2e_tests=0
    while read -r p f i; do
      passed=$((passed + p)); failed=$((failed + f)); e2e_tests=$((e2e_tests + p + f))
    done < <(cargo_results "$logs/e2e.log")
    # The e2e tests are #[ignore]d in the plain cargo test run above, and run here.
    ignored=$((ignored > e2e_tests ? ignored - e2e_tests : 0))
    [ "$e2e_tests" -gt 0 ] || { echo "cluster e2e: no test ran"; failed_steps+=("cluster e2e (no test ran)"); failed=$((failed + 1)); }
  else
    tail -30 "$logs/up.log"
    failed_steps+=("cluster up"); failed=$((failed + 1))
  fi
  echo "cluster e2e: $(( $(date +%s) - e2e_start )) s (enforcer: $(cat "${RSESSION_CACHE:-$HOME/.cache/rsession}/cluster/network-policy-enforcer" 2>/dev/null || echo none))"
fi

mark cluster-e2e
echo
echo "wall time: ${SECONDS}s (${step_times[*]})"
echo "== summary (cargo test + pytest + Inspector CLI + fuzz run + smoke + cluster e2e) =="
echo "ignored: ${ignored}"
[ ${#failed_steps[@]} -eq 0 ] || echo "failed steps: ${failed_steps[*]}"
echo "${passed} passed, ${failed} failed"
[ ${#failed_steps[@]} -eq 0 ] && [ "$failed" -eq 0 ]
