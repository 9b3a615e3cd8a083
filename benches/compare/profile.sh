#!/usr/bin/env bash
# Where a relay's microseconds go: HAProxy and redis-master-proxy (1:1 relay, default config)
# in front of one redis-server, `redis-benchmark -t set -d 3 -c 50 -P 1`, interleaved rounds.
# Per round and candidate: requests/s and, from `perf stat -p` over exactly that benchmark, CPU
# time, syscalls and context switches per request; then one `perf record` each, split into
# kernel / own code / libc and the top symbols; then one `perf sched record` each: how much each
# process ran, how often it was switched out (slept or was preempted) and how long it waited
# for a CPU. Needs perf (linux-perf) and the tools of
# benches/install.sh; loopback only, every process it starts is stopped.
#
#   benches/compare/profile.sh [ROUNDS] [REQUESTS]     (default 3 rounds of 100000)
#   REDIS_MASTER_PROXY_BIN=path   the proxy binary (default target/release/redis-master-proxy)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
n=${2:-100000}
bin=${REDIS_MASTER_PROXY_BIN:-target/release/redis-master-proxy}
for tool in perf redis-server redis-benchmark haproxy "$bin"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || {
    echo "profile.sh: $tool not found (benches/install.sh; perf: apt-get install linux-perf)" >&2
    exit 2
  }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_ping() {
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "profile.sh: nothing answers PING on port $1" >&2
  exit 1
}

rport=$(free_port); hport=$(free_port); pport=$(free_port); aport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_ping "$rport"
# HAProxy as benches/harness/endpoints.py starts it, without the health check (the relay only).
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
frontend f
    bind 127.0.0.1:$hport
    default_backend b
backend b
    server r1 127.0.0.1:$rport
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
hpid=$!; pids+=($hpid)
RUST_LOG=warn "$bin" run --listen "127.0.0.1:$pport" --admin "127.0.0.1:$aport" \
  --backend "127.0.0.1:$rport" >"$work/proxy.log" 2>&1 &
ppid=$!; pids+=($ppid)
wait_ping "$hport"
wait_ping "$pport"

bench() { redis-benchmark -p "$1" -t set -d 3 -c 50 -P 1 -n "$2" --csv 2>/dev/null | tail -1 | cut -d, -f2 | tr -d '"'; }
echo "| round | candidate | requests/s | CPU µs/req | syscalls/req | context switches/req |"
echo "|---|---|---:|---:|---:|---:|"
for r in $(seq "$rounds"); do
  for c in haproxy proxy; do
    if [ "$c" = haproxy ]; then pid=$hpid; port=$hport; else pid=$ppid; port=$pport; fi
    bench "$port" 20000 >/dev/null
    perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pid" \
      -o "$work/stat" -- redis-benchmark -p "$port" -t set -d 3 -c 50 -P 1 -n "$n" --csv \
      >"$work/rb" 2>/dev/null
    rps=$(tail -1 "$work/rb" | cut -d, -f2 | tr -d '"')
    awk -F, -v r="$r" -v c="$c" -v n="$n" -v rps="$rps" '
      $3 == "task-clock" { cpu = $1 }
      $3 == "context-switches" { cs = $1 }
      $3 ~ /sys_enter/ { sc = $1 }
      END { printf "| %d | %s | %.0f | %.2f | %.2f | %.2f |\n", r, c, rps, cpu * 1000 / n, sc / n, cs / n }
    ' "$work/stat"
  done
done
echo
for c in haproxy proxy; do
  if [ "$c" = haproxy ]; then pid=$hpid; port=$hport; else pid=$ppid; port=$pport; fi
  perf record -q -F 2000 -p "$pid" -o "$work/$c.data" -- \
    redis-benchmark -p "$port" -t set -d 3 -c 50 -P 1 -n "$n" --csv >/dev/null 2>&1
  echo "== $c: samples by object, then the top symbols"
  perf report -i "$work/$c.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -4 || true
  perf report -i "$work/$c.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12 || true
done
echo
echo "== scheduling (perf sched latency): run time, switches and wait for a CPU, per process"
for c in haproxy proxy; do
  if [ "$c" = haproxy ]; then port=$hport; else port=$pport; fi
  perf sched record -q -o "$work/$c.sched" -- \
    redis-benchmark -p "$port" -t set -d 3 -c 50 -P 1 -n "$n" --csv >/dev/null 2>&1
  echo "-- $c"
  perf sched latency -i "$work/$c.sched" --sort runtime 2>/dev/null \
    | grep -E 'haproxy|redis-server|redis-benchmark|data-|redis-master' | head -5 || true
done
