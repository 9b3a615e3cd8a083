#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile with podman, on a Debian machine with no
# Docker engine and no container registry: the two base images the Dockerfile names are made
# here with mmdebstrap from Debian's archive, then tagged with those names.
#
#   runtime base  gcr.io/distroless/cc-debian12:nonroot (the Dockerfile's RUNTIME_IMAGE):
#                 libc6, libgcc-s1, base-files, netbase, tzdata extracted (no shell, no
#                 package manager, no maintainer scripts), a `nonroot` user 65532, and a
#                 /var/lib/dpkg/status listing those packages for image scanners.
#   builder base  docker.io/library/rust:1-bookworm (BUILDER_IMAGE): Debian 12 with
#                 build-essential and ca-certificates, plus this machine's Rust toolchain
#                 (`rustc --print sysroot`) copied into /usr/local.
#
# Bases that already exist are kept (the builder is remade when the machine's rustc changes),
# and podman's layer cache keeps the dependency layer until Cargo.toml or Cargo.lock change.
# The Debian packages it needs (podman, runc, mmdebstrap) are installed with apt-get if
# missing. Podman runs with its own containers.conf (see write_containers_conf), pointed to by
# CONTAINERS_CONF; nothing on the machine is reconfigured. Runs as root (rootful podman).
#
# Usage: scripts/build-image.sh [--tag NAME] [--rebuild-bases] [--print-env]
#   --tag NAME        image to build (default redis-master-proxy:VERSION from Cargo.toml)
#   --rebuild-bases   remake both base images even if they exist
#   --print-env       only write the podman config and print `export CONTAINERS_CONF=...`, for
#                     running podman by hand or from .ci/image.sh: eval "$(... --print-env)"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="$ROOT/deploy/Dockerfile"
STATE="${IMAGE_STATE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/redis-master-proxy-image}"
SUITE=bookworm   # the Debian release both bases are made from; the Dockerfile says Debian 12
VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
TAG="redis-master-proxy:$VERSION"
REBUILD_BASES=0
PRINT_ENV=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="$2"; shift 2 ;;
    --rebuild-bases) REBUILD_BASES=1; shift ;;
    --print-env) PRINT_ENV=1; shift ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { printf '%s\n' "$*" >&2; }
WORK=""   # the base image being made, removed on exit even if mmdebstrap fails
trap 'if [ -n "$WORK" ]; then rm -rf "$WORK"; fi' EXIT
die() { log "build-image: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "needs root (rootful podman, mmdebstrap in root mode)"
  exec sudo --preserve-env=IMAGE_STATE_DIR,XDG_CACHE_HOME,PATH "$0" "$@"
fi

# ---------------------------------------------------------------------------- tools
install_packages() {
  local need=() c
  for c in podman runc mmdebstrap; do
    command -v "$c" >/dev/null 2>&1 || need+=("$c")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  log "==> apt-get install ${need[*]}"
  # Another apt-get on the machine holds the lock for a while: wait for it, do not fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${need[@]}" >/dev/null
}

# Podman's defaults that do not fit every machine, in a file of our own:
# - runtime runc: crun refuses hybrid cgroup v1/v2 layouts (as on the CI VM).
# - default_ulimits: podman asks for nofile/nproc limits above what many machines allow as a
#   hard limit, and then cannot start any container. Ask for the machine's own hard limit,
#   capped at 1048576 descriptors and 4096 processes (the proxy needs one thread per CPU).
# - cgroupfs and file events when systemd is not PID 1 (containers, minimal VMs).
limit_or() {
  local v="$1" cap="$2"
  if [ "$v" = unlimited ] || [ "$v" -gt "$cap" ]; then echo "$cap"; else echo "$v"; fi
}
write_containers_conf() {
  mkdir -p "$STATE"
  local nofile nproc conf="$STATE/containers.conf" tmp
  nofile="$(limit_or "$(ulimit -Hn)" 1048576)"
  nproc="$(limit_or "$(ulimit -Hu)" 4096)"
  tmp="$(mktemp "$STATE/containers.conf.XXXXXX")"
  {
    echo "# Written by scripts/build-image.sh; used through CONTAINERS_CONF."
    echo "[containers]"
    echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
    echo "[engine]"
    echo "runtime = \"runc\""
    if [ ! -d /run/systemd/system ]; then
      echo "cgroup_manager = \"cgroupfs\""
      echo "events_logger = \"file\""
    fi
  } > "$tmp"
  mv "$tmp" "$conf"
  export CONTAINERS_CONF="$conf"
}

# A base image name from the Dockerfile's `ARG NAME=default`, so the two never disagree.
dockerfile_arg() {
  local v
  v="$(sed -n "s/^ARG $1=//p" "$DOCKERFILE" | head -1)"
  [ -n "$v" ] || die "$DOCKERFILE has no 'ARG $1=...'"
  echo "$v"
}

# The machine's apt sources, so mmdebstrap uses the same (reachable) mirror and security suite.
apt_sources() {
  local f
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ] && grep -q "^[^#]*$SUITE" "$f"; then echo "$f"; return; fi
  done
  echo "http://deb.debian.org/debian"
}

# ---------------------------------------------------------------------------- runtime base
# An extract hook: runs after the packages are unpacked, with the root directory as $1.
runtime_hook() {
  cat <<'HOOK'
#!/bin/sh
set -eu
root="$1"
debs="$root/var/cache/apt/archives"
# tzdata pulls in debconf, base-files pulls in mawk: a distroless base has neither.
for deb in "$debs"/debconf_*.deb "$debs"/mawk_*.deb; do
  [ -e "$deb" ] || continue
  dpkg-deb --fsys-tarfile "$deb" | tar -t | while IFS= read -r f; do
    if [ -L "$root/$f" ] || [ -f "$root/$f" ]; then rm -f "$root/$f"; fi
  done
  rm -f "$deb"
done
# What is installed, for image scanners (dpkg itself is not).
: > "$root/var/lib/dpkg/status"
for deb in "$debs"/*.deb; do
  { dpkg-deb -f "$deb" | sed '1a Status: install ok installed'; echo; } >> "$root/var/lib/dpkg/status"
done
# Documentation, except the copyright files.
find "$root/usr/share/doc" -type f ! -name copyright -delete
rm -rf "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/lintian" \
       "$root/usr/share/bash-completion" "$root/var/cache/debconf"
find "$root/usr/share/doc" -depth -type d -empty -delete
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' \
  > "$root/etc/nsswitch.conf"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 0700 "$root/root"
chmod 1777 "$root/tmp"
HOOK
}

make_runtime_base() {
  local name="$1" work
  log "==> runtime base $name: mmdebstrap $SUITE (libc6 libgcc-s1 base-files netbase tzdata)"
  work="$(mktemp -d "$STATE/work.XXXXXX")"; WORK="$work"
  runtime_hook > "$work/hook"; chmod +x "$work/hook"
  mmdebstrap --quiet --mode=root --variant=extract --format=directory \
    --include=libc6,libgcc-s1,base-files,netbase,tzdata \
    --skip=download/empty --extract-hook="$work/hook" \
    "$SUITE" "$work/rootfs" "$(apt_sources)"
  # mmdebstrap's own apt setup, which it needs until its cleanup, after the hook.
  rm -rf "$work/rootfs/etc/apt" "$work/rootfs/var/lib/apt" "$work/rootfs/var/cache/apt"
  tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE glibc runtime base, made by scripts/build-image.sh\"" \
    "$work/rootfs.tar" "$name" >/dev/null
  rm -rf "$work"
}

# ---------------------------------------------------------------------------- builder base
# The builder fetches crates from crates.io with the machine's trust: the host's CA bundle
# replaces Debian's (a network that intercepts TLS has its own CA there). Only the builder
# stage has it; the runtime image has no CA certificates at all.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
make_builder_base() {
  local name="$1" sysroot="$2" rustc_version="$3" work
  log "==> builder base $name: mmdebstrap $SUITE (build-essential) + $rustc_version from $sysroot"
  work="$(mktemp -d "$STATE/work.XXXXXX")"; WORK="$work"
  # shellcheck disable=SC2016 # "$1" in a hook is the chroot, passed by mmdebstrap
  mmdebstrap --quiet --mode=root --variant=apt --format=tar \
    --include=build-essential,ca-certificates \
    --customize-hook="copy-in $sysroot/bin $sysroot/lib $sysroot/libexec /usr/local" \
    --customize-hook="copy-in $CA_BUNDLE /etc/ssl/certs" \
    --customize-hook='chroot "$1" rustc --version' \
    --customize-hook='chroot "$1" cargo --version' \
    "$SUITE" "$work/rootfs.tar" "$(apt_sources)"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE build-essential and Rust, made by scripts/build-image.sh\"" \
    --change "LABEL redis-master-proxy.rustc=\"$rustc_version\"" \
    "$work/rootfs.tar" "$name" >/dev/null
  rm -rf "$work"
}

# ------------------------------------------------------------------------------ main
install_packages
write_containers_conf
if [ "$PRINT_ENV" = 1 ]; then
  printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
  exit 0
fi

START=$SECONDS
RUNTIME_IMAGE="$(dockerfile_arg RUNTIME_IMAGE)"
BUILDER_IMAGE="$(dockerfile_arg BUILDER_IMAGE)"

if [ "$REBUILD_BASES" = 1 ] || ! podman image exists "$RUNTIME_IMAGE"; then
  make_runtime_base "$RUNTIME_IMAGE"
else
  log "==> runtime base $RUNTIME_IMAGE: exists"
fi

command -v rustc >/dev/null 2>&1 || die "no rustc on PATH: the builder base copies this machine's Rust toolchain"
SYSROOT="$(rustc --print sysroot)"
RUSTC_VERSION="$(rustc --version)"
# A builder base made here records its rustc; it is remade when the machine's rustc changes.
# One without that label came from elsewhere (a registry mirror) and is used as it is.
if [ "$REBUILD_BASES" = 1 ] || ! podman image exists "$BUILDER_IMAGE"; then
  make_builder_base "$BUILDER_IMAGE" "$SYSROOT" "$RUSTC_VERSION"
else
  have="$(podman image inspect --format '{{index .Labels "redis-master-proxy.rustc"}}' "$BUILDER_IMAGE")"
  if [ -n "$have" ] && [ "$have" != "$RUSTC_VERSION" ]; then
    log "==> builder base $BUILDER_IMAGE has $have, the machine has $RUSTC_VERSION"
    make_builder_base "$BUILDER_IMAGE" "$SYSROOT" "$RUSTC_VERSION"
  else
    log "==> builder base $BUILDER_IMAGE: exists${have:+ ($have)}"
  fi
fi
BASES_DONE=$SECONDS

# --pull=never: the bases are local. --network host: cargo fetches crates from crates.io in
# the dependency layer (only when Cargo.toml or Cargo.lock change).
log "==> podman build -f deploy/Dockerfile -t $TAG"
podman build --pull=never --network host --layers \
  -f "$DOCKERFILE" --ignorefile "$ROOT/deploy/Dockerfile.dockerignore" \
  -t "$TAG" "$ROOT"

size="$(podman image inspect --format '{{.Size}}' "$TAG")"
log "==> built $TAG: $((size / 1000000)) MB ($size bytes); bases $((BASES_DONE - START)) s, image build $((SECONDS - BASES_DONE)) s"
