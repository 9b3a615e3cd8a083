#!/usr/bin/env bash
# Redis's own test suite through the proxy, compared with the same selection run directly
# against a server. The suite comes from Debian's `redis` source package, the same version as the
# installed redis-server (fetched once with `apt-get source`, adding a deb-src entry for this
# Debian release when there is none; cached under $REDIS_SUITE_DIR, default target/redis-suite).
#
# The selection is the one upstream's "external server" CI job runs: `./runtest --host --port
# --tags -slow` against a server started with `--enable-debug-command yes
# --enable-protected-configs yes --enable-module-command yes --save ""`. Configurations:
#   default   the proxy with its default config in front of one dedicated redis-server;
#   sentinel  the proxy with [sentinel] over a master, two replicas and three sentinels.
# For each, the backend's connected_clients must come back to its count before the run.
# A per-unit report compares every run with the direct one; the script exits non-zero when a
# test that passes directly does not pass through the proxy (failed or not run), or on a leak.
#
# Usage: scripts/redis-suite.sh [--quick] [--config default|sentinel] [--through proxy|ideal]
#                               [--proxy-toml FILE] [--units "unit/a unit/b"] [--singledb]
#                               [--skip-extra FILE]
#   --quick        the proxy-relevant units that fit CI (see QUICK_UNITS) instead of all units
#   --config       run only this configuration (default: both)
#   --through      `ideal`: a plain byte relay (scripts/ideal-relay.py) instead of the proxy, to
#                  tell a test no relay can pass from a proxy bug
#   --proxy-toml   extra TOML appended to the proxy's config (e.g. a [health] table)
#   --units        run these units instead
#   --skip-extra   more tests to leave out, directly and through the proxy: one name a line,
#                  `#` comments (the tests multiplex mode must change: .ci/suite-multiplex-skip.txt)
#   --singledb     runtest's --singledb, directly and through the proxy: the tests use database 0
#                  and never send SELECT (which pins a client in `mode = "multiplex"`), so their
#                  commands share the proxy's master connections until one pins
# Logs and the report (report.md) go to $REDIS_SUITE_DIR/run-quick or run-full.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Units whose tests exercise connections rather than data types: protocol errors and closes,
# QUIT, MULTI and script timeouts, pub/sub, client tracking and redirection, CLIENT commands,
# pauses, blocking stream reads, pipelining, SYNC and --pipe from redis-cli. About 30 s directly.
QUICK_UNITS="unit/protocol unit/quit unit/multi unit/pubsub unit/tracking unit/introspection
  unit/info-command unit/pause unit/scripting unit/functions unit/type/stream-cgroups
  unit/keyspace unit/other unit/slowlog integration/redis-cli unit/replybufsize"

quick=0
configs="default sentinel"
through=proxy
proxy_toml=""
units=""
singledb=0
skip_extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --config) configs="$2"; shift ;;
    --through) through="$2"; shift ;;
    --proxy-toml) proxy_toml="$(realpath "$2")"; shift ;;
    --units) units="$2"; shift ;;
    --singledb) singledb=1 ;;
    --skip-extra) skip_extra="$(realpath "$2")"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "redis-suite: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$through" in proxy|ideal) ;; *) echo "redis-suite: --through proxy|ideal" >&2; exit 2 ;; esac
for c in $configs; do
  case "$c" in default|sentinel) ;; *) echo "redis-suite: unknown config $c" >&2; exit 2 ;; esac
done
if [ -z "$units" ] && [ "$quick" = 1 ]; then units=$QUICK_UNITS; fi
if [ -n "$proxy_toml" ] && [ ! -f "$proxy_toml" ]; then
  echo "redis-suite: --proxy-toml: no such file" >&2; exit 2
fi
if [ -n "$skip_extra" ] && [ ! -f "$skip_extra" ]; then
  echo "redis-suite: --skip-extra: no such file" >&2; exit 2
fi

work=${REDIS_SUITE_DIR:-$root/target/redis-suite}
name=$([ "$quick" = 1 ] && echo quick || echo full)
[ -n "${units:-}" ] && [ "$quick" = 0 ] && name=units
out="$work/run-$name"
rm -rf "$out"
mkdir -p "$out"

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
apt_install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- dependencies and the suite's source -------------------------------------------------------
scripts/install-deps.sh python3
command -v tclsh >/dev/null 2>&1 || apt_install tcl

version=$(dpkg-query -W -f='${source:Version}' redis-server)   # e.g. 5:7.0.15-1~deb12u10
upstream=${version#*:}
upstream=${upstream%%-*}
srcdir="$work/source-${version//[:~]/_}"
tree="$srcdir/redis-$upstream"

# Adds deb-src twins of this machine's Debian archive entries (one-line and deb822 formats).
add_deb_src() {
  local list=/etc/apt/sources.list.d/redis-suite-deb-src.sources
  python3 - "$list" <<'EOF' | $sudo tee "$list" >/dev/null
import glob, re, sys
stanzas = []
for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
    if path == sys.argv[1]:
        continue
    for block in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", block, re.M))
        if "deb" in fields.get("Types", "").split() and "debian" in fields.get("URIs", ""):
            fields["Types"] = "deb-src"
            stanzas.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$", line.strip())
        if m and "debian" in m.group(2):
            s = f"Types: deb-src\nURIs: {m.group(2)}\nSuites: {m.group(3)}\nComponents: {m.group(4)}"
            signed = re.search(r"signed-by=(\S+?)[\] ]", m.group(1) or "")
            if signed:
                s += f"\nSigned-By: {signed.group(1)}"
            stanzas.append(s)
if not stanzas:
    sys.exit("redis-suite: no Debian archive entry to derive a deb-src entry from")
print("\n\n".join(stanzas))
EOF
  $sudo apt-get update -qq
}

if [ ! -x "$tree/runtest" ]; then
  echo "== fetching Debian's redis $version source (once; cached in $srcdir)"
  command -v dpkg-source >/dev/null 2>&1 || apt_install dpkg-dev
  if ! apt-cache showsrc redis 2>/dev/null | grep -q '^Package: redis$'; then
    add_deb_src
  fi
  tmp=$(mktemp -d "$work/fetch.XXXXXX")
  (cd "$tmp" && apt-get source -qq --only-source "redis=$version" >/dev/null 2>"$tmp/apt.log") || {
    cat "$tmp/apt.log" >&2; exit 1; }
  rm -rf "$srcdir"
  mv "$tmp" "$srcdir"
  # The suite runs the tools from src/: use the installed ones, the same version.
  for b in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb redis-sentinel; do
    ln -sf "$(command -v "$b" || echo /usr/bin/$b)" "$tree/src/$b"
  done
fi

if [ "$through" = proxy ]; then
  cargo build --release --locked -q
fi
proxy_bin="$root/target/release/redis-master-proxy"

# --- processes ---------------------------------------------------------------------------------
pids=()
cleanup() {
  local p i
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # A server stuck in a script an aborted run left behind ignores SIGTERM: 5 s, then SIGKILL.
  for p in "${pids[@]}"; do
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
  admin_port=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls a command until it succeeds; fails after $1 seconds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "redis-suite: timed out after ${secs}s waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

cli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }
pong() { [ "$(cli "$1" ping 2>/dev/null)" = PONG ]; }
info_field() { cli "$1" info "$2" | tr -d '\r' | sed -n "s/^$3://p"; }
link_up() { [ "$(info_field "$1" replication master_link_status)" = up ]; }

# on_free_port NAME LOG LAUNCHER [args...]: runs `LAUNCHER PORT args...` in the background on a
# free port until it answers PING; a port taken in between costs one of five tries. Sets $port.
on_free_port() {
  local name=$1 log=$2 launch=$3 attempt pid
  shift 3
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    "$launch" "$port" "$@" &
    pid=$!
    pids+=("$pid")
    if wait_for 10 "$name to answer on $port" pong "$port"; then return 0; fi
    kill "$pid" 2>/dev/null || true
  done
  echo "redis-suite: $name did not start; log: $log" >&2
  exit 1
}

# redis_on PORT DIR [args...]: a redis-server as upstream's external job starts it.
redis_on() {
  local port=$1 dir=$2
  shift 2
  exec redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --logfile "$dir/redis.log" \
    --save "" --appendonly no --daemonize no \
    --enable-protected-configs yes --enable-debug-command yes --enable-module-command yes \
    "$@"
}

# sentinel_on PORT DIR MASTER_PORT: a sentinel monitoring the master as `suite`.
sentinel_on() {
  local port=$1 dir=$2 mport=$3
  cat >"$dir/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize no
dir $dir
logfile $dir/sentinel.log
sentinel monitor suite 127.0.0.1 $mport 2
sentinel down-after-milliseconds suite 30000
EOF
  exec redis-sentinel "$dir/sentinel.conf"
}

# start_redis NAME [args...]: sets $port.
start_redis() {
  local name=$1 dir="$out/$1"
  shift
  mkdir -p "$dir"
  on_free_port "$name" "$dir/redis.log" redis_on "$dir" "$@"
}

# start_sentinel NAME MASTER_PORT: sets $port.
start_sentinel() {
  local dir="$out/$1"
  mkdir -p "$dir"
  on_free_port "$1" "$dir/sentinel.log" sentinel_on "$dir" "$2"
}

# start_front NAME TOP_LEVEL_TOML TABLES_TOML BACKEND_PORT: the proxy (or the ideal relay);
# sets $port. The --proxy-toml file goes between the top-level keys and the tables.
start_front() {
  local name=$1 top=$2 tables=$3 bport=$4 dir="$out/$1"
  mkdir -p "$dir"
  if [ "$through" = proxy ]; then
    {
      printf '%s\n' "$top"
      if [ -n "$proxy_toml" ]; then cat "$proxy_toml"; echo; fi
      printf '%s\n' "$tables"
    } >"$dir/proxy.toml"
    "$proxy_bin" run --config "$dir/proxy.toml" >"$dir/stdout" 2>"$dir/proxy.log" &
  else
    python3 scripts/ideal-relay.py --backend "127.0.0.1:$bport" >"$dir/stdout" 2>"$dir/relay.log" &
  fi
  pids+=("$!")
  wait_for 20 "$name to print its address" grep -q '^listening ' "$dir/stdout"
  port=$(sed -n 's/^listening client=[^ ]*:\([0-9]*\).*/\1/p' "$dir/stdout")
  admin_port=$(sed -n 's/^listening client=[^ ]* admin=[^ ]*:\([0-9]*\).*/\1/p' "$dir/stdout")
  # A client can reach the master through it (a proxy waits for its first check round).
  wait_for 20 "$name to reach the master" pong "$port"
}

# connected_clients of a server, settled: the lowest of a few reads (the proxy's checks open a
# connection now and then); 999999 when it does not answer.
clients_now() {
  local i n min=999999
  for i in 1 2 3 4 5; do
    n=$(info_field "$1" clients connected_clients 2>/dev/null || true)
    if [ -n "$n" ] && [ "$n" -lt "$min" ]; then min=$n; fi
    sleep 0.1
  done
  echo "$min"
}

# Master connections the proxy holds open for no one client now (`mode = "multiplex"`: the
# shared ones and a spare per thread, open while idle; 0 for the relay and the ideal relay).
admin_port=""
shared_now() {
  [ -n "$admin_port" ] || { echo 0; return; }
  python3 - "$admin_port" <<'EOF' || echo 0
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next((int(float(l.split()[-1])) for l in text.splitlines()
            if l.startswith("redis_master_proxy_multiplex_pooled_connections ")), 0))
EOF
}

leaks=0
# run_suite NAME SUITE_PORT BACKEND_PORT TAGS [SKIPFILE]: runs the selection, then checks
# connected_clients.
run_suite() {
  local name=$1 sport=$2 bport=$3 tags=$4 skipfile=${5:-}
  local before after args=() u limit
  for u in $units; do args+=(--single "$u"); done
  if [ -n "$skipfile" ]; then args+=(--skipfile "$skipfile"); fi
  if [ "$singledb" = 1 ]; then args+=(--singledb); fi
  limit=$([ "$quick" = 1 ] && echo 900 || echo 2400)
  # The test server's port is found below --baseport (21111 by default): a base of our own, so
  # runs on one machine at the same time do not take each other's (the suite's servers take
  # ports from the base up, 8000 at most: below the kernel's ephemeral ports).
  args+=(--baseport "$(python3 -c 'import random; print(random.randrange(21200, 24000, 64))')")
  before=$(clients_now "$bport")
  shared_before=$(shared_now)
  echo "== $name: ./runtest --host 127.0.0.1 --port $sport --tags \"$tags\"${units:+ --single ... ($(echo $units | wc -w) units)}${skipfile:+ --skipfile $skipfile}$([ "$singledb" = 1 ] && echo " --singledb")"
  local t0=$SECONDS
  # In the background, so a signal to this script is handled at once (bash runs traps only
  # between foreground commands). `--timeout`: a test blocked for 5 minutes ends the run.
  { (cd "$tree" && timeout -k 10 "$limit" ./runtest --host 127.0.0.1 --port "$sport" --tags "$tags" \
      --timeout 300 "${args[@]}" 2>&1 || true) | tee "$out/$name.log" \
    | sed -u 's/\x1b\[[0-9;]*m//g' | grep --line-buffered -E '^\[([0-9]+/[0-9]+ done|err|exception|TIMEOUT)\]' || true; } &
  pids+=("$!")
  wait "$!" || true
  echo "   $name: $((SECONDS - t0)) s"
  # A run that aborted inside a script test leaves the script running (the server answers BUSY).
  cli "$bport" script kill >/dev/null 2>&1 || true
  cli "$bport" function kill >/dev/null 2>&1 || true
  case "$name" in *-direct) return 0 ;; esac
  # Every session the run opened is closed; the lingering close of a session whose master
  # closed first takes at most a second. Connections multiplex mode opened during the run for no
  # one client (shared, spare) stay open and are not a leak: allowed for, as its gauge counts them.
  local deadline=$((SECONDS + 20)) allowed shared
  while after=$(clients_now "$bport"); shared=$(shared_now)
    allowed=$((before + (shared > shared_before ? shared - shared_before : 0)))
    [ "$after" -gt "$allowed" ] && [ $SECONDS -lt $deadline ]; do
    sleep 0.5
  done
  echo "   $name: backend connected_clients $before before the run, $after after ($shared_before pooled by multiplex mode before, $shared after)"
  echo "$name connected_clients before=$before after=$after shared_before=$shared_before shared_after=$shared" >>"$out/clients.txt"
  if [ "$after" -gt "$allowed" ]; then
    echo "redis-suite: $name leaked $((after - allowed)) backend connection(s)" >&2
    leaks=1
  fi
}

front=$([ "$through" = proxy ] && echo proxy || echo ideal-relay)
echo "== Redis $upstream suite ($name selection) directly and through the $front; logs in $out"

# topology CONFIG RUN: fresh servers for one run (logs under $out/RUN-*); sets $mport (the
# master), $backends_toml and $sentinel_toml.
topology() {
  local config=$1 run=$2 i
  sentinel_toml=""
  start_redis "$run-master"
  mport=$port
  backends_toml="\"127.0.0.1:$mport\""
  [ "$config" = default ] && return 0
  start_redis "$run-replica1" --replicaof 127.0.0.1 "$mport"
  local r1=$port
  start_redis "$run-replica2" --replicaof 127.0.0.1 "$mport"
  local r2=$port
  wait_for 30 "replica 1 in sync" link_up "$r1"
  wait_for 30 "replica 2 in sync" link_up "$r2"
  local sentinels=()
  for i in 1 2 3; do
    start_sentinel "$run-sentinel$i" "$mport"
    sentinels+=("\"127.0.0.1:$port\"")
  done
  backends_toml="\"127.0.0.1:$mport\", \"127.0.0.1:$r1\", \"127.0.0.1:$r2\""
  sentinel_toml=$(printf '[sentinel]\naddresses = [%s]\nmaster_name = "suite"' \
    "$(IFS=,; echo "${sentinels[*]}" | sed 's/,/, /g')")
}

# tests_matching REGEX: names of the suite's tests with a body line matching REGEX (Python).
tests_matching() {
  python3 - "$tree/tests" "$1" <<'EOF'
import glob, re, sys
pattern = re.compile(sys.argv[2], re.I)
for path in sorted(glob.glob(sys.argv[1] + "/**/*.tcl", recursive=True)):
    name = None
    for line in open(path, errors="replace"):
        m = re.match(r'\s*test\s+[{"](.*)[}"]\s*\{\s*$', line)
        if m:
            name = m.group(1)
        elif name and pattern.search(line):
            print(name)
            name = None
EOF
}

# Tests that read what MONITOR prints right after their own commands: the proxy's health check
# (`INFO replication` every second, every 50 ms for 5 s after a change) is a client of the
# server like any other, so MONITOR shows it (as it shows HAProxy's `tcp-check`), and such a
# test fails whenever a check lands between its MONITOR and its commands. Left out in every
# configuration (docs/redis-suite.md); with sentinels their PINGs land there too.
READS_MONITOR='^\s*\$\w+\s+monitor\s*$'
# Tests whose body reads the replication stream, or subscribes to every channel (`psubscribe
# $rd *`) and waits for one message: with sentinels, their hello messages (published to the
# master every 2 s) arrive there too.
# So do tests that log every command to the slow log (`slowlog-log-slower-than 0`) and read it
# back, or pause writes (`CLIENT PAUSE … WRITE`) and count the clients it blocks (a hello's
# PUBLISH is one more).
READS_SENTINEL_HELLOS='attach_to_replication_stream|psubscribe \$\w+ \*\]|client pause \d+ write|slowlog-log-slower-than 0'

runs=()
for config in $configs; do
  # Tests tagged needs:repl demote the server, set min-replicas-to-write or read its replication
  # stream: they assume a server without replicas, so they run in the default configuration
  # only (with sentinels watching, a demoted master is also reconfigured behind the test's back).
  # Tests that read the replication stream or every pub/sub channel would also read the
  # sentinels' hello messages: skipped there too.
  tags="-slow"
  skip="$out/$config-skip.txt"
  tests_matching "$READS_MONITOR" >"$skip"
  if [ -n "$skip_extra" ]; then grep -v -e '^\s*#' -e '^\s*$' "$skip_extra" >>"$skip" || true; fi
  if [ "$config" = sentinel ]; then
    tags="-slow -needs:repl"
    tests_matching "$READS_SENTINEL_HELLOS" >>"$skip"
  fi
  # Directly against the servers of this configuration, then through the proxy in front of
  # fresh ones.
  topology "$config" "$config-direct"
  run_suite "$config-direct" "$mport" "$mport" "$tags" "$skip"
  cleanup
  topology "$config" "$config"
  start_front "$config-$front" \
    "$(printf 'listen = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\nbackends = [%s]' "$backends_toml")" \
    "$sentinel_toml" "$mport"
  run_suite "$config" "$port" "$mport" "$tags" "$skip"
  cleanup
  runs+=(--run "$config=$out/$config-direct.log:$out/$config.log")
done

echo "== report ($out/report.md)"
rc=0
python3 scripts/redis-suite-report.py "${runs[@]}" \
  --markdown "$out/report.md" || rc=$?
if [ "$leaks" != 0 ] && [ "$rc" = 0 ]; then rc=1; fi
exit "$rc"
