#!/usr/bin/env bash
# Installs the npm packages the tests use (pinned in package.json, locked in
# package-lock.json) into node_modules/ (git-ignored):
#   - chdb: the ClickHouse engine as a library (libchdb.so, ~550 MB, in the
#     optional dependency @chdb/lib-<platform>), which internal/chdbtest loads
#     to check clickgate's SQL against current ClickHouse;
#   - @clickhouse/client: the official Node driver, sending access_token.
#
# Idempotent: does nothing when every package and the library are there.
# No input read.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64)        platform=linux-x64-gnu ;;
  Linux-aarch64)       platform=linux-arm64-gnu ;;
  Darwin-arm64)        platform=darwin-arm64 ;;
  Darwin-x86_64)       platform=darwin-x64 ;;
  *) echo "install-npm: no chDB build for $(uname -s) $(uname -m)" >&2; exit 1 ;;
esac
lib="node_modules/@chdb/lib-$platform/libchdb.so"

if [ -s "$lib" ] && npm ls --depth=0 >/dev/null 2>&1; then
  echo "install-npm: every package of package.json and $lib are present; nothing to do"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-npm: $tool is not installed (apt-get install -y nodejs npm)" >&2
    exit 1
  fi
done

echo "install-npm: installing the npm packages in package.json (chdb with libchdb.so is a ~550 MB download)…"
start=$(date +%s)
# --include=optional: the library is an optional dependency of chdb, and a
# configuration that omits optional packages would skip exactly the part we need.
npm install --include=optional --no-audit --no-fund --no-progress </dev/null
if [ ! -s "$lib" ]; then
  echo "install-npm: npm finished but $lib is missing" >&2
  exit 1
fi
echo "install-npm: $lib installed ($(du -h "$lib" | cut -f1)) in $(( $(date +%s) - start ))s"
