#!/usr/bin/env bash
# Registry-only image build, no Docker: a Debian bookworm rootfs from debootstrap, packages
# installed with apt inside a chroot, packed as an OCI image with umoci and imported into
# containerd's k8s.io namespace under localhost/rsession/<name>:<tag>.
#
# Usage: images/build.sh [--no-import] [target ...]
#   targets: pause r-sandbox db-proxy operator mcp coredns (default: pause r-sandbox)
# Environment:
#   RSESSION_CACHE      cache folder (default ~/.cache/rsession); images live under images/
#   RSESSION_IMAGE_TAG  tag of the r-sandbox, db-proxy, operator and mcp images (default dev)
#   CONTAINERD_ADDRESS  containerd socket for the import (default /run/containerd/containerd.sock)
#   DEBIAN_MIRROR       Debian mirror (default http://deb.debian.org/debian)
#   RSESSION_BIN_DIR    folder holding release binaries rsession-operator / rsession-mcp
#                       (default $CARGO_TARGET_DIR/release or <repo>/target/release; built
#                       with `cargo build --release -p <crate>` when missing)
# Needs root (debootstrap, chroot) and: debootstrap umoci containerd (ctr) binutils.
# An OCI tarball is reused while its inputs (this script, the image's folder, the base rootfs
# settings) are unchanged; an image already imported with the same manifest digest is kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${RSESSION_CACHE:-$HOME/.cache/rsession}/images"
tag="${RSESSION_IMAGE_TAG:-dev}"
ctr_address="${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
pause_tag=3.10
registry=localhost/rsession

do_import=1
targets=()
for arg in "$@"; do
  case "$arg" in
    --no-import) do_import=0 ;;
    pause|r-sandbox|db-proxy|operator|mcp|coredns) targets+=("$arg") ;;
    *) echo "usage: $0 [--no-import] [pause|r-sandbox|db-proxy|operator|mcp|coredns ...]" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(pause r-sandbox)

log() { echo "[images] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, containerd import)"
needed=(debootstrap umoci objdump sha256sum)
[ "$do_import" -eq 0 ] || needed+=(ctr)   # only the import talks to containerd
for tool in "${needed[@]}"; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap umoci containerd binutils)"
done
mkdir -p "$cache/oci" "$cache/rootfs" "$cache/work"

# --- base rootfs -----------------------------------------------------------------------------

base_key="$(printf 'suite=%s mirror=%s variant=minbase include=ca-certificates v1' "$suite" "$mirror" | sha256sum | cut -c1-16)"
base="$cache/rootfs/base-$suite-$base_key"

ensure_base() {
  if [ -f "$base/.rsession-complete" ]; then
    log "base rootfs: cached at $base"
    return
  fi
  local start tmp
  start=$(date +%s)
  tmp="$base.tmp"
  rm -rf "$tmp"
  log "base rootfs: debootstrap --variant=minbase $suite (about a minute)..."
  debootstrap --variant=minbase --include=ca-certificates "$suite" "$tmp" "$mirror" >"$cache/work/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $cache/work/debootstrap.log"
  cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
  # Keep package scripts from starting services inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod 755 "$tmp/usr/sbin/policy-rc.d"
  touch "$tmp/.rsession-complete"
  mv "$tmp" "$base"
  log "base rootfs: built in $(( $(date +%s) - start ))s"
}

# Runs a command inside a chroot with /proc and the host's resolv.conf, undoing both after.
in_chroot() {
  local root="$1"; shift
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  local rc=0
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@" || rc=$?
  umount "$root/proc"
  : >"$root/etc/resolv.conf"
  return $rc
}

# --- OCI packing -----------------------------------------------------------------------------

# inputs_key <function names> -- <files...>: a short hash of the given functions' definitions
# (the target's recipe), the base settings and the given files, so that editing one target's
# recipe does not invalidate the others.
inputs_key() {
  local fns=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do fns+=("$1"); shift; done
  [ $# -eq 0 ] || shift
  { declare -f pack in_chroot "${fns[@]}"; echo "$base_key $tag"; for f in "$@"; do echo "== ${f#"$here"/}"; cat "$f"; done; } \
    | sha256sum | cut -c1-16
}

# pack <name> <tag> <rootfs> <tarball> <umoci config args...>: moves rootfs into a new
# single-layer OCI image tagged <tag> (umoci init/new/unpack/repack/config), then tars the
# layout to <tarball>.
pack() {
  local name="$1" ref="$2" rootfs="$3" tarball="$4"; shift 4
  local work="$cache/work/$name-oci"
  rm -rf "$work"
  mkdir -p "$work"
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$ref"
  umoci unpack --image "$work/layout:$ref" "$work/bundle" >/dev/null
  rmdir "$work/bundle/rootfs"
  mv "$rootfs" "$work/bundle/rootfs"
  umoci repack --image "$work/layout:$ref" "$work/bundle"
  umoci config --image "$work/layout:$ref" \
    --author "RSession" \
    --config.label "org.opencontainers.image.title=rsession-$name" \
    "$@"
  umoci gc --layout "$work/layout"
  tar -C "$work/layout" -cf "$tarball.tmp" .
  # Older builds of the same image and tag are superseded.
  find "$cache/oci" -maxdepth 1 -name "$name-$ref-*.tar" ! -name "$(basename "$tarball")" -delete
  mv "$tarball.tmp" "$tarball"
  rm -rf "$work"
}

# import_image <name> <tarball>: imports into containerd (k8s.io) unless the same manifest
# digest is already there under localhost/rsession/<name>:<tag>.
import_image() {
  local name="$1" tarball="$2" want have ref start
  [ "$do_import" -eq 1 ] || { log "$name: --no-import, tarball at $tarball"; return; }
  [ -S "$ctr_address" ] || die "containerd socket $ctr_address not found (start the node with e2e/local/up.sh)"
  want="$(tar -xOf "$tarball" ./index.json | grep -o '"digest":"sha256:[0-9a-f]*"' | head -1 | cut -d'"' -f4)"
  ref="$(tar -xOf "$tarball" ./index.json | grep -o '"org.opencontainers.image.ref.name":"[^"]*"' | head -1 | cut -d'"' -f4)"
  have="$(ctr -a "$ctr_address" -n k8s.io images ls "name==$registry/$name:$ref" 2>/dev/null | awk 'NR>1{print $3}')"
  if [ "$have" = "$want" ]; then
    log "$name: $registry/$name:$ref already imported ($want)"
    return
  fi
  start=$(date +%s%N)
  ctr -a "$ctr_address" -n k8s.io images import --base-name "$registry/$name" "$tarball" >/dev/null
  log "$name: imported $registry/$name:$ref in $(( ($(date +%s%N) - start) / 1000000 )) ms"
}

# --- targets ---------------------------------------------------------------------------------

# pause: the pod sandbox image. catatonit (Debian, statically linked) in pause mode (-P).
build_pause() {
  local key tarball root
  key="$(inputs_key build_pause)"
  tarball="$cache/oci/pause-$pause_tag-$key.tar"
  if [ ! -f "$tarball" ]; then
    log "pause: building"
    root="$cache/work/pause-rootfs"
    rm -rf "$root" "$cache/work/pause-deb"
    mkdir -p "$root" "$cache/work/pause-deb"
    (cd "$cache/work/pause-deb" && apt-get download catatonit >/dev/null 2>&1) || die "apt-get download catatonit failed (run apt-get update)"
    dpkg-deb -x "$cache/work/pause-deb"/catatonit_*.deb "$cache/work/pause-deb/x"
    install -m 755 "$cache/work/pause-deb/x/usr/bin/catatonit" "$root/catatonit"
    rm -rf "$cache/work/pause-deb"
    pack pause "$pause_tag" "$root" "$tarball" \
      --config.user 65535:65535 --config.entrypoint /catatonit --config.entrypoint -P
  else
    log "pause: cached tarball $tarball"
  fi
  import_image pause "$tarball"
}

# new_rootfs <name>: a fresh copy of the base rootfs at $cache/work/<name>-rootfs; prints its path.
new_rootfs() {
  local root="$cache/work/$1-rootfs"
  rm -rf "$root"
  cp -a "$base" "$root"
  rm -f "$root/.rsession-complete"
  echo "$root"
}

# finish_rootfs <root> <uid> <user> <home>: adds the image's user and group (uid = gid), then
# drops what a running container never reads: apt's lists and caches, logs, the policy-rc.d
# guard, documentation other than copyright notices, man and info pages.
finish_rootfs() {
  local root="$1" uid="$2" user="$3" home="$4"
  in_chroot "$root" sh -c "groupadd -g $uid $user && useradd -u $uid -g $uid -d $home -M -s /usr/sbin/nologin $user"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root/usr/sbin/policy-rc.d"
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  rm -rf "$root/usr/share/man" "$root/usr/share/info"
}

# r-sandbox: R, Rserve and the packages in images/r-sandbox/apt-packages.txt; uid 1000.
build_r_sandbox() {
  local dir="$here/r-sandbox" key tarball root pkgs start
  key="$(inputs_key build_r_sandbox ensure_base new_rootfs finish_rootfs -- "$dir/apt-packages.txt" "$dir/Rserve.conf")"
  tarball="$cache/oci/r-sandbox-$tag-$key.tar"
  if [ ! -f "$tarball" ]; then
    ensure_base
    start=$(date +%s)
    root="$(new_rootfs r-sandbox)"
    pkgs="$(grep -v '^\s*#' "$dir/apt-packages.txt" | xargs)"
    log "r-sandbox: apt-get install $(echo "$pkgs" | wc -w) packages in a chroot (a few minutes)..."
    in_chroot "$root" sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs && apt-get clean" \
      >"$cache/work/r-sandbox-apt.log" 2>&1 || die "apt-get failed, see $cache/work/r-sandbox-apt.log"
    finish_rootfs "$root" 1000 rsession /workspace
    mkdir -p "$root/workspace" "$root/etc/rserve"
    install -m 644 "$dir/Rserve.conf" "$root/etc/rserve/Rserve.conf"
    log "r-sandbox: rootfs ready in $(( $(date +%s) - start ))s, packing..."
    pack r-sandbox "$tag" "$root" "$tarball" \
      --config.user 1000:1000 \
      --config.workingdir /workspace \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --config.env LANG=C.UTF-8 \
      --config.env HOME=/workspace \
      --config.env TMPDIR=/tmp \
      --config.exposedports 6311/tcp \
      --config.entrypoint /usr/lib/R/bin/R --config.entrypoint CMD \
      --config.entrypoint /usr/lib/R/site-library/Rserve/libs/Rserve \
      --config.entrypoint --no-save \
      --config.entrypoint --RS-conf --config.entrypoint /etc/rserve/Rserve.conf \
      --config.entrypoint --RS-set --config.entrypoint daemon=disable
    log "r-sandbox: built in $(( $(date +%s) - start ))s ($(du -h "$tarball" | cut -f1))"
  else
    log "r-sandbox: cached tarball $tarball"
  fi
  import_image r-sandbox "$tarball"
}

# db-proxy: the session pod's PostgreSQL credential proxy (PgBouncer from Debian) and its
# entrypoint; uid 1001, so that it shares no user with the R container. Only PgBouncer's
# binary is taken from its package (the package pulls in postgresql-common and perl, which the
# proxy does not need); its libraries come from apt.
build_db_proxy() {
  local dir="$here/db-proxy" key tarball root start
  key="$(inputs_key build_db_proxy ensure_base new_rootfs finish_rootfs -- "$dir/entrypoint.sh")"
  tarball="$cache/oci/db-proxy-$tag-$key.tar"
  if [ ! -f "$tarball" ]; then
    ensure_base
    start=$(date +%s)
    root="$(new_rootfs db-proxy)"
    log "db-proxy: apt-get install PgBouncer's libraries, extract pgbouncer in a chroot..."
    in_chroot "$root" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends libc-ares2 libevent-2.1-7 \
      && cd /tmp && apt-get download pgbouncer && dpkg-deb -x pgbouncer_*.deb /tmp/pgb \
      && install -m 755 /tmp/pgb/usr/sbin/pgbouncer /usr/sbin/pgbouncer \
      && install -D -m 644 /tmp/pgb/usr/share/doc/pgbouncer/copyright /usr/share/doc/pgbouncer/copyright \
      && rm -rf /tmp/pgb /tmp/pgbouncer_*.deb && apt-get clean && /usr/sbin/pgbouncer --version' \
      >"$cache/work/db-proxy-apt.log" 2>&1 || die "apt-get failed, see $cache/work/db-proxy-apt.log"
    finish_rootfs "$root" 1001 dbproxy /nonexistent
    # PgBouncer prints English only; R's message translations are kept in r-sandbox.
    rm -rf "$root/usr/share/locale"
    mkdir -p "$root/run/db-proxy"
    install -m 755 "$dir/entrypoint.sh" "$root/usr/local/bin/rsession-db-proxy"
    pack db-proxy "$tag" "$root" "$tarball" \
      --config.user 1001:1001 \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --config.exposedports 6432/tcp \
      --config.entrypoint /usr/local/bin/rsession-db-proxy
    log "db-proxy: built in $(( $(date +%s) - start ))s ($(du -h "$tarball" | cut -f1))"
  else
    log "db-proxy: cached tarball $tarball"
  fi
  import_image db-proxy "$tarball"
}

# copy_with_libs <binary> <rootfs>: copies the binary to /usr/local/bin and the shared
# libraries it needs (DT_NEEDED, recursively) from the base rootfs.
copy_with_libs() {
  local bin="$1" root="$2" todo lib found seen=" "
  install -D -m 755 "$bin" "$root/usr/local/bin/$(basename "$bin")"
  install -D -m 755 "$base/lib64/ld-linux-x86-64.so.2" "$root/lib64/ld-linux-x86-64.so.2"
  todo="$(objdump -p "$bin" | awk '/NEEDED/{print $2}')"
  while [ -n "$todo" ]; do
    set -- $todo
    lib="$1"; shift; todo="$*"
    case "$seen" in *" $lib "*) continue ;; esac
    seen="$seen$lib "
    found="$base/usr/lib/x86_64-linux-gnu/$lib"
    [ -e "$found" ] || die "$(basename "$bin") needs $lib, not in the base rootfs"
    install -D -m 644 "$(readlink -f "$found")" "$root/usr/lib/x86_64-linux-gnu/$lib"
    todo="$todo $(objdump -p "$found" | awk '/NEEDED/{print $2}')"
  done
}

# distroless_image <name> <binary> <tag>: a distroless-like rootfs with the binary at
# /usr/local/bin, its glibc libraries (none for a static binary), CA certificates and
# passwd/group entries for uid 1000; the binary is the entrypoint.
distroless_image() {
  local name="$1" bin="$2" ref="$3" key tarball root
  ensure_base
  key="$( { inputs_key distroless_image copy_with_libs ensure_base; sha256sum <"$bin"; } | sha256sum | cut -c1-16)"
  tarball="$cache/oci/$name-$ref-$key.tar"
  if [ ! -f "$tarball" ]; then
    log "$name: building from $bin"
    root="$cache/work/$name-rootfs"
    rm -rf "$root"
    mkdir -p "$root/etc/ssl/certs" "$root/tmp"
    chmod 1777 "$root/tmp"
    copy_with_libs "$bin" "$root"
    cp "$base/etc/ssl/certs/ca-certificates.crt" "$root/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nrsession:x:1000:1000:rsession:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nrsession:x:1000:\n' >"$root/etc/group"
    pack "$name" "$ref" "$root" "$tarball" \
      --config.user 1000:1000 \
      --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      --config.entrypoint "/usr/local/bin/$(basename "$bin")"
    log "$name: built ($(du -h "$tarball" | cut -f1))"
  else
    log "$name: cached tarball $tarball"
  fi
  import_image "$name" "$tarball"
}

# operator / mcp: our release binary.
build_release_image() {
  local name="$1" crate="rsession-$1" bindir bin
  bindir="${RSESSION_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/release}"
  bin="$bindir/$crate"
  if [ ! -x "$bin" ]; then
    log "$name: $bin missing, running cargo build --release -p $crate"
    (cd "$repo" && cargo build --release -p "$crate") || die "cargo build --release -p $crate failed"
  fi
  distroless_image "$name" "$bin" "$tag"
}

# coredns: the cluster DNS of e2e/local, built by e2e/local/up.sh from the version pinned in
# e2e/local/node/coredns/go.mod; tagged with that version.
build_coredns_image() {
  local version bin
  version="$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$repo/e2e/local/node/coredns/go.mod")"
  bin="${RSESSION_CACHE:-$HOME/.cache/rsession}/coredns-$version/bin/coredns"
  [ -x "$bin" ] || die "coredns: $bin missing (e2e/local/up.sh builds it)"
  distroless_image coredns "$bin" "$version"
}

for t in "${targets[@]}"; do
  case "$t" in
    pause) build_pause ;;
    r-sandbox) build_r_sandbox ;;
    db-proxy) build_db_proxy ;;
    operator|mcp) build_release_image "$t" ;;
    coredns) build_coredns_image ;;
  esac
done
