#!/usr/bin/env bash
# GPU checkpoint/restore through cedana's src/gpu on a real NVIDIA machine (see README.md here).
# For each tensor size in GIBS it starts the self-checking PyTorch workload (app.py), then runs
# probe.ts twice on it: an in-place GPU cycle (lock, checkpoint, restore, unlock; no CRIU), and
# a full one with `criu dump -j` / `criu restore -j -d` between checkpoint and restore. After
# each, the workload must be alive, counting on from where it was, with its GPU data intact.
#
# Offline-safe: downloads nothing; deno runs the probe from local files only.
#
# Environment:
#   DENO=/path/to/deno  CRIU=/path/to/criu (a wrapper script is fine)  PYTHON=python3 (with torch)
#   GIBS="1 8"          tensor sizes in GiB, one workload each
#   LOCK_TIMEOUT_MS=10000
#   CRIU_CYCLES=1       full (CRIU) cycles per size; bench/gpu_bench.sh takes the median of several
#   WORK=dir            where logs and images go (default: a new /tmp/cedana-gpu.XXXXXX)
#   KEEP_IMAGES=1       keep the CRIU images (they are as large as the GPU tensor and more)
#   FAKE_GPU=1          test hook (run_on_gpu_test.ts): no nvidia-smi/torch checks, and APP_CMD, a
#                       shell command printing "<step> ..." lines, runs instead of app.py
# Exit status 0 when every check passed; the summary table comes last.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DENO=${DENO:-deno}
CRIU=${CRIU:-criu}
PYTHON=${PYTHON:-python3}
GIBS=${GIBS:-1 8}
LOCK_TIMEOUT_MS=${LOCK_TIMEOUT_MS:-10000}
CRIU_CYCLES=${CRIU_CYCLES:-1}
WORK=${WORK:-$(mktemp -d /tmp/cedana-gpu.XXXXXX)}
FAKE_GPU=${FAKE_GPU:-0}
mkdir -p "$WORK"

export DENO_NO_UPDATE_CHECK=1
# Local files only: no config (its npm imports), no lockfile, no npm or remote modules.
PROBE=("$DENO" run -A --no-config --no-lock --no-npm --no-remote "$HERE/probe.ts")

APP_PID=
cleanup() {
  if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then kill -9 "$APP_PID"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [ -n "${APP_LOG:-}" ] && [ -f "$APP_LOG" ]; then
    echo "--- workload log tail ($APP_LOG):" >&2
    tail -5 "$APP_LOG" >&2
  fi
  echo "logs in $WORK" >&2
  exit 1
}
say() { echo "== $*"; }

# --- preflight ---------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "run as root (CRIU, and the checkpoint API acting on another process)"
command -v "$DENO" >/dev/null || fail "no deno: set DENO=/path/to/deno"
"$CRIU" --version >/dev/null 2>&1 || fail "no working criu: set CRIU=/path/to/criu"
if [ "$FAKE_GPU" != 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv ||
    fail "nvidia-smi failed: no NVIDIA GPU or driver"
  "$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"' ||
    fail "$PYTHON needs torch with CUDA (set PYTHON=...)"
else
  [ -n "${APP_CMD:-}" ] || fail "FAKE_GPU=1 needs APP_CMD"
fi
echo "kernel $(uname -r); $("$DENO" --version | head -1); $("$CRIU" --version | head -1)"
if "$CRIU" check >"$WORK/criu-check.log" 2>&1; then
  echo "criu check: ok"
else
  echo "criu check failed (going on; see $WORK/criu-check.log):"
  tail -2 "$WORK/criu-check.log"
fi

# --- workload ----------------------------------------------------------------------------------
last_step() { grep -E '^[0-9]+ ' "$APP_LOG" | tail -1 | cut -d' ' -f1; }

start_app() { # $1: GiB. Sets APP_PID and APP_LOG.
  APP_LOG=$WORK/app-$1.log
  rm -f "$APP_LOG" "$APP_LOG.pid"
  local app=("$PYTHON" "$HERE/app.py")
  [ "$FAKE_GPU" = 1 ] && app=(bash -c "$APP_CMD")
  # As in the reference probe: a bash session leader waits on the workload, so the workload is
  # reaped as soon as criu dump kills it (restore needs its pid free). The workload is not a
  # session leader, hence -j on dump and restore. Its log is a plain file (CRIU checks the size
  # of regular files at restore; nothing writes to it while the workload is dumped).
  APP_LOG=$APP_LOG GIB=$1 setsid -f bash -c \
    '"$@" </dev/null >"$APP_LOG" 2>&1 & echo $! >"$APP_LOG.pid"; wait' workload "${app[@]}" \
    </dev/null >/dev/null 2>&1
  local k
  for k in $(seq 240); do
    grep -q '^3 ' "$APP_LOG" 2>/dev/null && break
    grep -q MISMATCH "$APP_LOG" 2>/dev/null && break
    [ -s "$APP_LOG.pid" ] && ! kill -0 "$(cat "$APP_LOG.pid")" 2>/dev/null && fail "the workload exited"
    sleep 0.5
  done
  APP_PID=$(cat "$APP_LOG.pid" 2>/dev/null)
  grep -q '^3 ' "$APP_LOG" 2>/dev/null || fail "the workload did not reach step 3 in 120 s"
  echo "workload pid $APP_PID: $(head -1 "$APP_LOG")"
}

check_app() { # $1: label. Alive, counting on without a gap, no mismatch.
  local before after
  before=$(last_step)
  sleep 2
  kill -0 "$APP_PID" 2>/dev/null || fail "$1: the workload (pid $APP_PID) is gone"
  grep -q MISMATCH "$APP_LOG" && fail "$1: the workload saw wrong GPU data: $(grep -m1 MISMATCH "$APP_LOG")"
  after=$(last_step)
  [ "$after" -gt "$before" ] || fail "$1: the workload stopped counting (step $before, 2 s later $after)"
  awk '/^[0-9]+ / { if (prev && $1 != prev + 1) { print "step " prev " then " $1; bad = 1 } prev = $1 }
       END { exit bad }' "$APP_LOG" || fail "$1: the step counter jumped (state lost or replayed)"
  echo "$1: workload at step $after, every step in order, data checks passed"
}

run_probe() { # $1: log name, rest: probe arguments
  local log=$WORK/$1
  shift
  "${PROBE[@]}" --pid "$APP_PID" --lock-timeout "$LOCK_TIMEOUT_MS" "$@" 2>&1 | tee "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || fail "probe failed (log $log)"
}

# --- cycles ------------------------------------------------------------------------------------
for gib in $GIBS; do
  say "GIB=$gib: starting the workload"
  start_app "$gib"

  say "GIB=$gib: in-place GPU checkpoint/restore (no CRIU)"
  run_probe "probe-inplace-$gib.log" --gpu-only
  check_app "GIB=$gib in-place"

  images=$WORK/img-$gib
  for c in $(seq "$CRIU_CYCLES"); do
    say "GIB=$gib: GPU checkpoint + CRIU dump/restore + GPU restore ($c of $CRIU_CYCLES)"
    rm -rf "$images"
    run_probe "probe-criu-$gib-$c.log" --images "$images" --criu "$CRIU"
    check_app "GIB=$gib after CRIU restore $c"
  done

  kill -9 "$APP_PID"
  APP_PID=
  [ "${KEEP_IMAGES:-0}" = 1 ] || rm -rf "$images"
done

# --- summary -----------------------------------------------------------------------------------
say "summary (ms; image in GiB)"
"$DENO" eval --no-config --no-lock '
  const cols = ["lock", "gpu checkpoint", "criu dump", "criu restore", "gpu restore", "unlock"];
  console.log(["run", ...cols, "image", "ticks"].join("\t"));
  for (const f of Deno.args) {
    const line = Deno.readTextFileSync(f).split("\n").find((l) => l.startsWith("RESULT "));
    if (!line) continue;
    const r = JSON.parse(line.slice(7));
    const cell = (k) => (r.timings[k] === undefined ? "-" : r.timings[k].toFixed(1));
    const img = r.facts.imageBytes === undefined ? "-" : (r.facts.imageBytes / 2 ** 30).toFixed(2);
    const name = f.replace(/^.*probe-/, "").replace(/\.log$/, "");
    console.log([name, ...cols.map(cell), img, r.facts.ticksDuringCheckpoint ?? "-"].join("\t"));
  }
' "$WORK"/probe-*.log
echo "PASS (logs in $WORK)"
