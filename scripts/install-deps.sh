#!/usr/bin/env bash
# Installs what the tests and the demo need, from Debian's packages, when it is missing:
# redis-server, redis-sentinel and redis-cli/redis-benchmark (redis-tools).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
for extra in "$@"; do
  command -v "$extra" >/dev/null 2>&1 || need+=("$extra")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services on install; the tests and the demo run their own.
for svc in redis-server redis-sentinel; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
