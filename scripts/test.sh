#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against real redis-server and
# redis-sentinel processes on free loopback ports (installed first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --clients
cargo test --locked "$@"
