#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60); exits non-zero when one crashes
# or fails one of its checks.
#
#   scripts/fuzz.sh                   # 60 s per target
#   scripts/fuzz.sh 20                # a short run, as CI does (about 2.5 minutes with the build)
#   scripts/fuzz.sh 3600 config       # one target, an hour
#
# Works on the stable toolchain: targets are built with `--sanitizer none` (the code under test
# is safe Rust, so a sanitizer adds little). FUZZ_SANITIZER=address builds with AddressSanitizer
# instead, which on stable needs RUSTC_BOOTSTRAP=1 (set here).
# Targets run side by side, FUZZ_PARALLEL at a time (default: the number of CPUs).
#
# Seeds are read from fuzz/corpus/<target>/ (kept in git); inputs a run discovers go to
# fuzz/work/<target>/ (ignored by git), so later runs start from them. A failing input is saved
# in fuzz/artifacts/<target>/; docs/fuzzing.md says how to turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
if [ "$#" -gt 0 ]; then shift; fi
case "$secs" in
  '' | *[!0-9]* | 0) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(info_reply config sentinel_event mux_reply); fi
parallel="${FUZZ_PARALLEL:-$(nproc)}"

# libfuzzer-sys compiles libFuzzer itself, which needs a C++ compiler.
if ! command -v c++ >/dev/null 2>&1; then
  echo "== installing a C++ compiler (g++)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ] && ! rustc --version | grep -q nightly; then
  # Sanitizers are enabled with -Z flags, which the stable compiler accepts only like this.
  export RUSTC_BOOTSTRAP=1
fi
flags=(--sanitizer "$sanitizer")

echo "== building fuzz targets (sanitizer: $sanitizer)"
start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "built in $(($(date +%s) - start)) s"

# Stop the runs this script started if it is interrupted.
cleanup() {
  local pids
  pids=$(jobs -pr)
  [ -n "$pids" ] && kill $pids 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_target() {
  local t=$1 status=0 pid
  mkdir -p "fuzz/work/$t"
  # -max_total_time bounds the run; timeout(1) is a backstop should the fuzzer itself hang.
  # The first corpus directory is the one new inputs are written to.
  timeout --kill-after=10 $((secs + 120)) \
    cargo fuzz run "${flags[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"fuzz/work/$t.log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null' TERM
  wait "$pid" || status=$?
  echo "$status" >"fuzz/work/$t.status"
}

mkdir -p fuzz/work
for t in "${targets[@]}"; do
  rm -f "fuzz/work/$t.status"
  while [ "$(jobs -pr | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  echo "== $t: ${secs} s"
  run_target "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
  log="fuzz/work/$t.log"
  status=$(cat "fuzz/work/$t.status" 2>/dev/null || echo missing)
  # libFuzzer's closing statistics: runs, executions per second, inputs added to the corpus.
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  if [ "$status" = 0 ]; then
    echo "ok   $t: ${runs:-? runs}, ${eps:-?} exec/s, ${new:-?} new inputs"
  else
    echo "FAIL $t (exit $status): log in $log"
    # A failed check panics; a stack overflow or another signal shows as libFuzzer's summary.
    grep -m1 -A3 'panicked at' "$log" ||
      grep -E '^== SIGSEGV|ERROR: libFuzzer|^SUMMARY: libFuzzer' "$log" ||
      tail -n 30 "$log"
    grep -A2 -E '^(Failing input|Reproduce with):' "$log" || true
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== fuzzing FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
  exit 1
fi
echo "== fuzzing passed: ${targets[*]}, ${secs} s each"
