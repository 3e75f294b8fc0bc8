#!/usr/bin/env bash
# Installs chDB, the ClickHouse engine as a library (libchdb.so, ~550 MB), that
# internal/chdbtest loads to check clickgate's SQL against current ClickHouse.
# It comes from the npm package chdb (pinned in package.json, locked in
# package-lock.json), whose optional dependency @chdb/lib-<platform> holds the
# library; it lands in node_modules/ (git-ignored).
#
# Idempotent: does nothing when the library is already there. No input read.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64)        platform=linux-x64-gnu ;;
  Linux-aarch64)       platform=linux-arm64-gnu ;;
  Darwin-arm64)        platform=darwin-arm64 ;;
  Darwin-x86_64)       platform=darwin-x64 ;;
  *) echo "install-chdb: no chDB build for $(uname -s) $(uname -m)" >&2; exit 1 ;;
esac
lib="node_modules/@chdb/lib-$platform/libchdb.so"

if [ -s "$lib" ]; then
  echo "install-chdb: $lib is present ($(du -h "$lib" | cut -f1)); nothing to do"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-chdb: $tool is not installed (apt-get install -y nodejs npm)" >&2
    exit 1
  fi
done

echo "install-chdb: installing the npm packages in package.json (chdb with libchdb.so, ~550 MB download)…"
start=$(date +%s)
# --include=optional: the library is an optional dependency of chdb, and a
# configuration that omits optional packages would skip exactly the part we need.
npm install --include=optional --no-audit --no-fund --no-progress </dev/null
if [ ! -s "$lib" ]; then
  echo "install-chdb: npm finished but $lib is missing" >&2
  exit 1
fi
echo "install-chdb: $lib installed ($(du -h "$lib" | cut -f1)) in $(( $(date +%s) - start ))s"
