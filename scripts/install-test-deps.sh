#!/usr/bin/env bash
# Installs what the tests need, idempotently: Go modules now; Debian and
# npm packages are added here as the tests that need them land.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "install-test-deps: Go is not installed; install Go 1.26 or newer" >&2
  exit 1
fi
echo "install-test-deps: Go modules"
go mod download
