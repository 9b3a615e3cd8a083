#!/usr/bin/env bash
# The one install step of benches/ (and tests/e2e/): run it once; a benchmark run never installs
# anything and stops naming this script when a tool is missing.
#
#   Debian packages, when their command is missing: redis-server, redis-sentinel, redis-tools
#   (redis-benchmark), haproxy, nutcracker (twemproxy), python3-venv; installed with RUNLEVEL=1 so
#   that Debian starts no Redis or HAProxy service (every benchmark runs its own, on free loopback
#   ports). nutcracker's service never starts on install: both its init script and its systemd
#   unit wait for /etc/nutcracker/nutcracker.yml, which the package does not ship.
#   matplotlib for the charts, into benches/.venv, unless this Python already has it.
#
#   benches/install.sh               everything
#   benches/install.sh --no-charts   the Debian packages only
set -euo pipefail
cd "$(dirname "$0")/.."

charts=1
for arg in "$@"; do
  case "$arg" in
    --no-charts) charts=0 ;;
    *) echo "usage: benches/install.sh [--no-charts]" >&2; exit 2 ;;
  esac
done

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nutcracker >/dev/null 2>&1 || need+=(nutcracker)
if [ "$charts" = 1 ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$charts" = 1 ] && ! python3 -c 'import matplotlib' >/dev/null 2>&1 \
    && ! benches/.venv/bin/python -c 'import matplotlib' >/dev/null 2>&1; then
  echo "installing matplotlib into benches/.venv" >&2
  [ -x benches/.venv/bin/python ] || python3 -m venv benches/.venv
  benches/.venv/bin/python -m pip install --quiet matplotlib
fi
echo "benches: tools installed" >&2
