#!/usr/bin/env bash
# Installs Debian's ClickHouse server and client (18.16) for the tests, idempotently.
#
# The tests (internal/chtest) start their own clickhouse-server processes on free
# loopback ports with private configs; they need only the binary. So this script:
#   - does nothing when clickhouse-server is already installed;
#   - otherwise runs apt-get update and installs the packages without a terminal;
#   - keeps the package's maintainer scripts from starting a system service
#     (a temporary policy-rc.d answering 101 "action forbidden", unless one exists);
#   - checks afterwards that no system ClickHouse is left holding ports 8123/9000,
#     and stops one that this install started.
# Needs root (or sudo). Safe to run with no standard input (CI).
set -euo pipefail

log() { echo "install-clickhouse: $*"; }

find_server() {
  if [ -x /usr/sbin/clickhouse-server ]; then
    echo /usr/sbin/clickhouse-server
    return 0
  fi
  command -v clickhouse-server 2>/dev/null
}

if bin=$(find_server); then
  log "clickhouse-server already installed: $bin"
  exit 0
fi

. "$(dirname "$0")/lib.sh"
if ! SUDO=$(sudo_prefix); then
  log "not root and no sudo: cannot install clickhouse-server" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Forbid service starts from maintainer scripts for the duration of the install.
policy=/usr/sbin/policy-rc.d
made_policy=""
cleanup() {
  if [ -n "$made_policy" ]; then
    $SUDO rm -f "$policy"
  fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  log "adding a temporary $policy so that the install starts no service"
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi

start=$(date +%s)
log "apt-get update"
$SUDO apt-get update -q </dev/null
log "apt-get install clickhouse-server clickhouse-client"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  clickhouse-server clickhouse-client </dev/null
log "installed in $(($(date +%s) - start)) s"

if ! bin=$(find_server); then
  log "clickhouse-server is still missing after the install" >&2
  exit 1
fi

# A system service must not run: the tests start their own servers, and one on
# 8123/9000 would only confuse them. Stop one that the install may have started
# (it runs with the system config; test servers have their own and are left alone).
system_pids() { pgrep -f -- 'clickhouse-server.*/etc/clickhouse-server/' 2>/dev/null || true; }
pids=$(system_pids)
if [ -n "$pids" ]; then
  log "a system clickhouse-server is running (pid $pids); stopping it"
  if command -v service >/dev/null 2>&1; then
    $SUDO service clickhouse-server stop </dev/null >/dev/null 2>&1 || true
  fi
  for pid in $pids; do
    $SUDO kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(system_pids)
    [ -z "$pids" ] && break
    sleep 0.5
  done
  for pid in $pids; do
    $SUDO kill -KILL "$pid" 2>/dev/null || true
  done
fi
if command -v ss >/dev/null 2>&1 && ss -ltnH 2>/dev/null | grep -Eq ':(8123|9000)\b'; then
  log "warning: something listens on port 8123 or 9000 (not needed by the tests)"
fi

# clickhouse-server 18.16 has no --version; the client of the same package does.
log "ready: $bin ($(clickhouse-client --version 2>/dev/null | head -n1 || true))"
