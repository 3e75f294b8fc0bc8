#!/usr/bin/env bash
# Installs what test/deploy and `make image` need, idempotently, from Debian's
# packages: podman with runc (crun, podman's default runtime, refuses this
# kind of machine's hybrid cgroups; runc runs the image), CA certificates (the
# image's trust store comes from the build host) and systemd-analyze (checks
# deploy/systemd/clickgate.service offline). Does nothing when all are present.
# Needs root (or sudo). Safe to run with no standard input (CI).
set -euo pipefail

log() { echo "install-deploy-tools: $*"; }

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

if [ ${#missing[@]} -eq 0 ]; then
  log "podman, runc, CA certificates and systemd-analyze already installed"
  exit 0
fi

. "$(dirname "$0")/lib.sh"
if ! SUDO=$(sudo_prefix); then
  log "not root and no sudo: cannot install ${missing[*]}; test/deploy skips what needs them" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log "installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
log "installed ${missing[*]}"
