#!/usr/bin/env bash
# make image: builds clickgate static (CGO_ENABLED=0, -tags nochdb: without the embedded engine), assembles the root file system
# (deploy/rootfs.sh) and builds deploy/Containerfile with podman, or docker
# when podman is missing. IMAGE names the result (default clickgate:VERSION).
set -euo pipefail
cd "$(dirname "$0")/.."

version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
image=${IMAGE:-clickgate:$version}
ctx=bin/image

if command -v podman >/dev/null 2>&1; then
  engine=podman
elif command -v docker >/dev/null 2>&1; then
  engine=docker
else
  echo "make image: neither podman nor docker is installed (Debian: apt-get install podman)" >&2
  exit 1
fi

mkdir -p bin
CGO_ENABLED=0 ${GO:-go} build -trimpath -tags nochdb -ldflags "-s -w -X main.version=$version" -o bin/clickgate-image ./cmd/clickgate
./deploy/rootfs.sh bin/clickgate-image "$ctx"
"$engine" build -f deploy/Containerfile -t "$image" "$ctx"
echo "make image: built $image with $engine"
