#!/usr/bin/env bash
# Runs each rserve fuzz target for a bounded time (default 60 s each; FUZZ_SECONDS to change).
# Exits non-zero when a target crashes, panics, leaks past the RSS limit or times out.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_sexp server_stream)
mkdir -p corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seed corpora are generated, not committed (see seeds.sh).
  ./seeds.sh "corpus/$t"
  echo "fuzzing $t for ${seconds}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1
done
