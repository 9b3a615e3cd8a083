#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against real redis-server and
# redis-sentinel processes on free loopback ports (installed first if missing, with the client
# libraries tests/clients.rs runs: scripts/install-deps.sh --clients).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --clients
cargo test --locked "$@"
