#!/bin/sh
# Builds the worker as a static binary, and the operations console beside
# it. The only build recipe: the Dockerfile runs it, and .ci/run runs it,
# so the image and CI cannot build differently.
#
#   deploy/build-static.sh [OUTPUT]     (default ./bin/worker; the console: console in the same directory)
#
# Run it from the repository root. GOOS and GOARCH pass through (the
# Dockerfile sets them for cross-builds); cgo is always off.
set -eu
out="${1:-bin/worker}"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out" ./cmd/worker
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$(dirname "$out")/console" ./cmd/console
