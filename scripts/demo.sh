#!/usr/bin/env bash
# The local demo: a Redis master and two replicas on loopback (ports 7000-7002), three
# sentinels watching them (27000-27002, master name "demo", quorum 2), and redis-master-proxy in
# front on 127.0.0.1:16379 (admin on 127.0.0.1:8404).
#
#   scripts/demo.sh          start everything, show the proxy routing, wait for Ctrl-C
#   scripts/demo.sh --auto   also run a SENTINEL FAILOVER and show the proxy follow it, then exit
set -euo pipefail
cd "$(dirname "$0")/.."
auto=0
[ "${1:-}" = "--auto" ] && auto=1

scripts/install-deps.sh
echo "building redis-master-proxy (release)..."
cargo build --release --locked --quiet
bin=target/release/redis-master-proxy

work=$(mktemp -d -t rmp-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

for port in 7000 7001 7002 27000 27001 27002 16379 8404; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use; stop what listens there and retry" >&2
    exit 1
  fi
done

start_redis() { # port [replicaof-port]
  local port=$1 dir="$work/redis-$1"
  mkdir -p "$dir"
  local args=(--port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no
              --logfile "$dir/redis.log" --daemonize no --repl-diskless-sync-delay 0)
  [ $# -gt 1 ] && args+=(--replicaof 127.0.0.1 "$2")
  redis-server "${args[@]}" &
  pids+=($!)
}
wait_for() { # description command...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  exit 1
}

start_redis 7000
wait_for "the master" redis-cli -p 7000 ping
start_redis 7001 7000
start_redis 7002 7000
wait_for "the replicas" sh -c 'redis-cli -p 7001 info replication | grep -q master_link_status:up && redis-cli -p 7002 info replication | grep -q master_link_status:up'

for port in 27000 27001 27002; do
  dir="$work/sentinel-$port"
  mkdir -p "$dir"
  cat > "$dir/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
daemonize no
dir $dir
logfile $dir/sentinel.log
sentinel monitor demo 127.0.0.1 7000 2
sentinel down-after-milliseconds demo 1000
sentinel failover-timeout demo 3000
sentinel parallel-syncs demo 1
CONF
  redis-sentinel "$dir/sentinel.conf" &
  pids+=($!)
done
echo "waiting for the sentinels to discover the replicas and each other (a few seconds)..."
wait_for "the sentinels" sh -c 'for p in 27000 27001 27002; do
  redis-cli -p $p sentinel master demo | grep -A1 -x num-slaves | tail -1 | grep -qx 2 || exit 1
  redis-cli -p $p sentinel master demo | grep -A1 -x num-other-sentinels | tail -1 | grep -qx 2 || exit 1
done'

"$bin" run --config config/demo.toml > "$work/proxy.out" 2> "$work/proxy.log" &
pids+=($!)
wait_for "the proxy to find the master" sh -c 'curl -fs http://127.0.0.1:8404/readyz || (exec 3<>/dev/tcp/127.0.0.1/8404 && printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && grep -q " 200 " <&3)'

status() { "$bin" status --admin 127.0.0.1:8404; }
echo
echo "== redis-master-proxy routes 127.0.0.1:16379 to the master =="
status
echo
echo "\$ redis-cli -p 16379 set demo:key hello      -> $(redis-cli -p 16379 set demo:key hello)"
echo "\$ redis-cli -p 16379 info replication | grep role  -> $(redis-cli -p 16379 info replication | grep ^role | tr -d '\r')"

if [ $auto -eq 1 ]; then
  echo
  echo "== SENTINEL FAILOVER demo: the sentinels promote a replica; the proxy follows =="
  old=$(redis-cli -p 27000 sentinel get-master-addr-by-name demo | tail -1)
  redis-cli -p 27000 sentinel failover demo
  wait_for "the sentinels to switch" sh -c "! redis-cli -p 27000 sentinel get-master-addr-by-name demo | tail -1 | grep -qx $old"
  new=$(redis-cli -p 27000 sentinel get-master-addr-by-name demo | tail -1)
  wait_for "the proxy to follow" sh -c "\"$bin\" status --admin 127.0.0.1:8404 | grep -q '^master: 127.0.0.1:$new'"
  status
  echo "\$ redis-cli -p 16379 set demo:after-failover yes -> $(redis-cli -p 16379 set demo:after-failover yes)"
  echo "the write landed on $new: $(redis-cli -p "$new" get demo:after-failover)"
  echo
  echo "proxy log:"
  grep -E "WARN|ERROR" "$work/proxy.log" | sed 's/^/  /' | cut -c1-220
  exit 0
fi

cat <<MSG

Try it (in another terminal):
  redis-cli -p 16379                                   # talk to the master through the proxy
  $bin status                                          # backends, roles, offsets, master, sentinels
  curl -s 127.0.0.1:8404/metrics | grep redis_master_proxy_
Fail over and watch the proxy follow:
  redis-cli -p 27000 sentinel failover demo            # planned switchover by the sentinels
  watch -n 0.5 $bin status                             # the route moves as soon as it is committed
  redis-cli -p 7000 debug sleep 5                      # or hang the master: the route is withdrawn
  redis-cli -p 7001 replicaof no one                   # or promote a replica by hand
Proxy log: $work/proxy.log        Ctrl-C stops everything.
MSG
wait "${pids[-1]}"
