#!/usr/bin/env bash
# Installs everything RSession's demo and tests need on a fresh Debian 12
# machine: R with Rserve and the R packages the harness and tests use (apt),
# bubblewrap for the direct backend's sandbox (util-linux gives prlimit),
# openssl for the test control plane's certificates, the Python MCP SDK (pip,
# in a venv), and cargo-fuzz. Idempotent: a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "[install-deps] $*" >&2; }

APT_PACKAGES=(
  r-base-core r-cran-rserve
  r-cran-dplyr r-cran-readr r-cran-ggplot2 r-cran-tibble r-cran-tidyr
  r-cran-jsonlite r-cran-ragg r-cran-evaluate
  r-cran-dbi r-cran-rsqlite r-cran-dbplyr r-cran-readxl r-cran-openxlsx
  openssl python3-venv
  bubblewrap util-linux
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "(1/3) apt: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "(1/3) apt: all ${#APT_PACKAGES[@]} packages present"
fi

venv="$here/python/.venv"
if [ -f "$here/python/requirements.txt" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    log "(2/3) python: creating venv $venv"
    python3 -m venv "$venv"
  fi
  log "(2/3) python: installing $(tr '\n' ' ' < "$here/python/requirements.txt")"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/python/requirements.txt"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "(3/3) cargo-fuzz: installing from crates.io (a few minutes)"
  cargo install --locked -q cargo-fuzz
else
  log "(3/3) cargo-fuzz: $(cargo fuzz --version)"
fi
