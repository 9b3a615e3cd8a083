#!/usr/bin/env bash
# Installs what the tests and the demo need, from Debian's packages, when it is missing:
# redis-server, redis-sentinel and redis-cli/redis-benchmark (redis-tools); and any command
# named as an argument.
#
# --clients: also the client libraries the real-client tests run (tests/clients.rs), at the
# versions pinned in tests/clients/: redis-py (requirements.txt, from PyPI, into
# tests/clients/.venv) and ioredis (package-lock.json, from npm, into
# tests/clients/node_modules); python3-venv, nodejs and npm from Debian when missing. Done again
# only when the pins change.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=0
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
for extra in "$@"; do
  if [ "$extra" = --clients ]; then
    clients=1
    continue
  fi
  command -v "$extra" >/dev/null 2>&1 || need+=("$extra")
done
if [ "$clients" = 1 ]; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts the packaged services on install; the tests and the demo run their own.
  for svc in redis-server redis-sentinel; do
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
fi
[ "$clients" = 1 ] || exit 0

dir=tests/clients
if ! cmp -s "$dir/requirements.txt" "$dir/.venv/.installed" 2>/dev/null; then
  echo "installing into $dir/.venv: $(grep -v '^#' "$dir/requirements.txt" | xargs)" >&2
  rm -rf "$dir/.venv"
  python3 -m venv "$dir/.venv"
  "$dir/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$dir/requirements.txt"
  cp "$dir/requirements.txt" "$dir/.venv/.installed"
fi
if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed" 2>/dev/null; then
  echo "installing into $dir/node_modules: the packages of $dir/package-lock.json" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$dir/package-lock.json" "$dir/node_modules/.installed"
fi
