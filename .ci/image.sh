#!/usr/bin/env bash
# CI: builds the container image (scripts/build-image.sh: podman, local mmdebstrap bases) and
# runs it the way the Kubernetes base does: read-only root, user 65532, no capabilities, the
# config file mounted at the default path, the password from an environment variable, and a
# real redis-server behind it. Everything listens on 127.0.0.1 only (--network host).
#
# Checks, each failing the script with a message naming it:
#   1. `check --config` on the shipped deploy/kubernetes/base/config.toml, with no --entrypoint
#   2. the default command (`run --config /etc/redis-master-proxy/config.toml`): /readyz 200,
#      PING and SET/GET through it (AUTH with the password the proxy reads from REDIS_PASSWORD),
#      the process runs as 65532 on a read-only root, `redis-master-proxy status` inside it
#      names the master, and `podman stop` (SIGTERM) with a client connected exits 0
#   3. flags alone (`run --backend ...`, no config file): /readyz 200, PING, stop exits 0
# Containers and redis-servers it starts are removed on exit, pass or fail.
#
# Usage: bash .ci/image.sh [--tag NAME]   (default redis-master-proxy:VERSION; rebuilt first)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
TAG="redis-master-proxy:$VERSION"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
START=$SECONDS

log() { printf '%s\n' "$*"; }
WORK="$(mktemp -d)"
CONTAINERS=()
REDIS_PIDS=()
FAILED=0
cleanup() {
  local c p
  for c in "${CONTAINERS[@]}"; do
    if [ "$FAILED" = 1 ]; then
      log "---- podman logs $c (last 40 lines)"
      podman logs --tail 40 "$c" 2>&1 | sed 's/^/  /' || true
    fi
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  for p in "${REDIS_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$FAILED" = 1 ]; then
    for f in "$WORK"/redis-*.log; do
      [ -f "$f" ] && { log "---- $f (last 20 lines)"; tail -20 "$f" | sed 's/^/  /'; }
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { FAILED=1; log "image: FAILED: $*"; exit 1; }
set -E
trap 'FAILED=1; log "image: FAILED at line $LINENO: $BASH_COMMAND"' ERR

# ------------------------------------------------------------------------------ build
scripts/install-deps.sh python3 curl
log "== build (scripts/build-image.sh --tag $TAG)"
scripts/build-image.sh --tag "$TAG" || fail "scripts/build-image.sh"
eval "$(scripts/build-image.sh --print-env)"
BUILT=$SECONDS
SIZE="$(podman image inspect --format '{{.Size}}' "$TAG")"
USER_CFG="$(podman image inspect --format '{{.Config.User}}' "$TAG")"
[ "$USER_CFG" = "65532:65532" ] || fail "image USER is '$USER_CFG', expected 65532:65532"
log "  image $TAG: $SIZE bytes, USER $USER_CFG"

# ------------------------------------------------------------------------------ helpers
# Free loopback ports, chosen by the kernel.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits (up to $2 s) until `redis-cli` on port $1 answers PING.
start_redis() {
  local port="$1" name="$2"; shift 2
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis-$name.log" "$@" &
  REDIS_PIDS+=($!)
  local deadline=$((SECONDS + 10))
  until redis-cli -h 127.0.0.1 -p "$port" --no-auth-warning "${REDIS_AUTH[@]}" PING 2>/dev/null | grep -q PONG; do
    [ $SECONDS -lt $deadline ] || fail "redis-server $name on 127.0.0.1:$port did not answer PING within 10 s"
    sleep 0.1
  done
}

# HTTP status of http://127.0.0.1:$1$2 ("000" when nothing answers).
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1$2" || true; }

wait_ready() {
  local admin="$1" name="$2" deadline=$((SECONDS + 30)) code
  while :; do
    code="$(http_code "$admin" /readyz)"
    [ "$code" = 200 ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ] \
      || fail "$name exited before /readyz answered 200"
    [ $SECONDS -lt $deadline ] || fail "$name: /readyz is $code after 30 s, expected 200"
    sleep 0.2
  done
  log "  ok   $name: /readyz 200 after $((SECONDS + 30 - deadline)) s"
}

# Sends SIGTERM (podman stop) and requires exit code 0.
stop_container() {
  local name="$1" t0=$SECONDS rc
  podman stop -t 30 "$name" >/dev/null || fail "podman stop $name"
  rc="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
  [ "$rc" = 0 ] || fail "$name exited $rc after SIGTERM, expected 0"
  if podman logs "$name" 2>&1 | grep -q 'panicked'; then fail "$name: a panic in its log"; fi
  log "  ok   $name: podman stop (SIGTERM) -> exit 0 in $((SECONDS - t0)) s"
}

RUN_FLAGS=(--read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges)

# ---------------------------------------------------------------------------- 1. check
log "== 1. check --config (the shipped Kubernetes config), no --entrypoint"
podman run --rm "${RUN_FLAGS[@]}" --network none -e REDIS_PASSWORD=placeholder-for-check \
  -v "$ROOT/deploy/kubernetes/base/config.toml:/etc/redis-master-proxy/config.toml:ro" \
  "$TAG" check --config /etc/redis-master-proxy/config.toml > "$WORK/check.out" 2>&1 \
  || { sed 's/^/  /' "$WORK/check.out"; fail "check --config deploy/kubernetes/base/config.toml in the image"; }
log "  ok   $(head -1 "$WORK/check.out")"

# ---------------------------------------------------------------------- 2. config file
log "== 2. default command: config file, password from REDIS_PASSWORD"
read -r REDIS_PORT LISTEN_PORT ADMIN_PORT <<< "$(free_ports 3)"
PASSWORD="image-ci-$RANDOM$RANDOM"
REDIS_AUTH=(-a "$PASSWORD")
start_redis "$REDIS_PORT" auth --requirepass "$PASSWORD"
cat > "$WORK/config.toml" <<EOF
listen = "127.0.0.1:$LISTEN_PORT"
admin = "127.0.0.1:$ADMIN_PORT"
backends = ["127.0.0.1:$REDIS_PORT"]
max_connections = 1000
shutdown_grace = "2s"

[health]
interval = "500ms"
timeout = "250ms"

[auth]
password_env = "REDIS_PASSWORD"
EOF
chmod 0644 "$WORK/config.toml"
NAME="rmp-image-ci-config-$$"
CONTAINERS+=("$NAME")
REDIS_PASSWORD="$PASSWORD" podman run -d --name "$NAME" "${RUN_FLAGS[@]}" --network host -e REDIS_PASSWORD \
  -v "$WORK/config.toml:/etc/redis-master-proxy/config.toml:ro" "$TAG" >/dev/null \
  || fail "podman run $TAG (default command)"
wait_ready "$ADMIN_PORT" "$NAME"

RC=(redis-cli -h 127.0.0.1 -p "$LISTEN_PORT" --no-auth-warning -a "$PASSWORD")
out="$("${RC[@]}" PING 2>&1)"; [ "$out" = PONG ] || fail "PING through the proxy answered '$out'"
"${RC[@]}" SET image-ci "$NAME" >/dev/null
out="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --no-auth-warning -a "$PASSWORD" GET image-ci 2>&1)"
[ "$out" = "$NAME" ] || fail "SET through the proxy did not reach redis-server (GET answered '$out')"
log "  ok   PING through the proxy: PONG; SET through it reached redis-server"

[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$NAME")" = true ] || fail "$NAME root is not read-only"
PID="$(podman inspect --format '{{.State.Pid}}' "$NAME")"
uids="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$PID/status")"
[ "$uids" = "65532 65532 65532 65532" ] || fail "$NAME runs with uids '$uids', expected 65532"
log "  ok   process $PID runs as uid 65532 on a read-only root"

podman exec "$NAME" redis-master-proxy status --admin "127.0.0.1:$ADMIN_PORT" > "$WORK/status.out" 2>&1 \
  || { sed 's/^/  /' "$WORK/status.out"; fail "redis-master-proxy status inside the container"; }
grep -q "master: 127.0.0.1:$REDIS_PORT" "$WORK/status.out" \
  || { sed 's/^/  /' "$WORK/status.out"; fail "status inside the container does not name 127.0.0.1:$REDIS_PORT as master"; }
log "  ok   podman exec ... status: $(grep 'master:' "$WORK/status.out")"
if podman logs "$NAME" 2>&1 | grep -q -- "$PASSWORD"; then fail "the password appears in the container log"; fi

# An idle client stays connected through the stop: SIGTERM drains it within shutdown_grace.
exec 3<>"/dev/tcp/127.0.0.1/$LISTEN_PORT"
stop_container "$NAME"
exec 3>&-

# ------------------------------------------------------------------------ 3. flags only
log "== 3. flags only: run --backend (no config file)"
read -r REDIS2_PORT LISTEN2_PORT ADMIN2_PORT <<< "$(free_ports 3)"
REDIS_AUTH=()
start_redis "$REDIS2_PORT" noauth
NAME="rmp-image-ci-flags-$$"
CONTAINERS+=("$NAME")
podman run -d --name "$NAME" "${RUN_FLAGS[@]}" --network host "$TAG" run \
  --listen "127.0.0.1:$LISTEN2_PORT" --admin "127.0.0.1:$ADMIN2_PORT" \
  --backend "127.0.0.1:$REDIS2_PORT" >/dev/null || fail "podman run $TAG run --backend ..."
wait_ready "$ADMIN2_PORT" "$NAME"
out="$(redis-cli -h 127.0.0.1 -p "$LISTEN2_PORT" PING 2>&1)"
[ "$out" = PONG ] || fail "PING through the flags-only proxy answered '$out'"
log "  ok   PING through the flags-only proxy: PONG"
stop_container "$NAME"

log "== image OK: $TAG $((SIZE / 1000000)) MB; build $((BUILT - START)) s, runs $((SECONDS - BUILT)) s"
