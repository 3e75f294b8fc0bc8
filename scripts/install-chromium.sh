#!/usr/bin/env bash
# Installs Chromium for the browser tests (test/login drives it headless with
# chromedp), idempotently: nothing to do when a Chromium is on the PATH.
# Otherwise installs Debian's package; needs root (or sudo).
set -euo pipefail

for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then
    echo "install-chromium: already installed: $(command -v "$b")"
    exit 0
  fi
done

. "$(dirname "$0")/lib.sh"
if ! SUDO=$(sudo_prefix); then
  echo "install-chromium: need root or sudo to install chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium
echo "install-chromium: installed $(command -v chromium)"
