#!/usr/bin/env bash
# Installs what the tests need, idempotently: Go modules, Debian's
# ClickHouse server (18.16), the npm packages of package.json and Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "install-test-deps: Go is not installed; install Go 1.26 or newer" >&2
  exit 1
fi
echo "install-test-deps: Go modules"
go mod download

echo "install-test-deps: ClickHouse server"
./scripts/install-clickhouse.sh

echo "install-test-deps: npm packages (chDB, the ClickHouse 26.7 engine; @clickhouse/client)"
./scripts/install-npm.sh

echo "install-test-deps: Chromium (browser sign-in tests)"
./scripts/install-chromium.sh
