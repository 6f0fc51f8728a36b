#!/usr/bin/env bash
# GPU checkpoint/restore THROUGH CEDANA (daemon + CLI) on a real NVIDIA machine, from the offline
# bundle (scripts/bundle.sh). For each tensor size in GIBS, a self-checking PyTorch job (app.py)
# is run as a cedana job with --gpu-enabled, then:
#   1. dump + restore             (the job continues, counter and GPU data intact)
#   2. dump --leave-running, then kill the original and restore the copy
#   3. CYCLES (3) dump/restore cycles
#   then (MULTI=1, the default) a job of 2 CUDA processes of 0.5 GiB each: 2 dump/restore cycles
#   (after each restore `job inspect` must show every CUDA process running; after the cycles the
#   job's steps must be in order)
#   4. failure: another process takes the GPU memory; the restore must be refused early with a
#      clear message, the checkpoint stays usable, and restores once the memory is free again
# It records each phase's time (cedana's --json timings) and the image size, and prints a table
# for docs/gpu.md. Offline-safe: nothing is downloaded.
#
#   CEDANA=/opt/cedana/0.1.0/cedana (the bundle's launcher; default: cedana on PATH)
#   PYTHON=python3 (with CUDA torch)  GIBS="1 8"  WORK=dir (default: a new /tmp/cedana-gpu-job.*)
#   FAKE_GPU=1: test hook (no GPU): APP_CMD runs instead of app.py; set CEDANA_CUDA_LIB etc. yourself
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CEDANA=${CEDANA:-cedana}
PYTHON=${PYTHON:-python3}
GIBS=${GIBS:-1 8}
CYCLES=${CYCLES:-3}
FAKE_GPU=${FAKE_GPU:-0}
WORK=${WORK:-$(mktemp -d /tmp/cedana-gpu-job.XXXXXX)}
. "$HERE/lib.sh"
daemon_env
RESULTS=$WORK/results.tsv
: >"$RESULTS"
DAEMON=
HOG=
cleanup() {
  "$CEDANA" job kill --all >/dev/null 2>&1 || true
  [ -n "$HOG" ] && kill -9 "$HOG" 2>/dev/null
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root"
if [ "$FAKE_GPU" != 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$WORK/gpu.txt" ||
    fail "no NVIDIA GPU"
  "$PYTHON" -c 'import torch; assert torch.cuda.is_available()' || fail "$PYTHON needs CUDA torch"
fi
"$CEDANA" --version
start_daemon
"$CEDANA" check || echo "WARNING: cedana check failed; going on to see what works"

T0=0 # set just before a timed CLI call (not inside $(...): that is a subshell)
wall_ms() { echo $(($(now_ms) - T0)); }
record() { # gib phase json wall-ms
  echo -e "$1\t$2\t$4\t$(echo "$3" | json 'json.dumps(d.get("timings", {}))')\t$(echo "$3" | json 'd["checkpoint"]["size"] if isinstance(d.get("checkpoint"), dict) else ""')" >>"$RESULTS"
}
prune() { # jid: delete all but the newest checkpoint (an 8 GiB job's images are 9 GB each)
  local id
  for id in $("$CEDANA" checkpoints "$1" --json | json '" ".join(c["id"] for c in d[1:])'); do
    "$CEDANA" job checkpoint delete "$id" >/dev/null || fail "cannot delete checkpoint $id"
  done
}
cuda_running() { # jid [n]: `job inspect` shows the job's n (1) CUDA processes running on the GPU
  local line
  line=$("$CEDANA" job inspect "$1" | grep '^CUDA:') || fail "job inspect $1 shows no CUDA line"
  [ "$(echo "$line" | grep -Eo '[0-9]+: running' | wc -l)" = "${2:-1}" ] &&
    ! echo "$line" | grep -Eq 'locked|checkpointed|failed' || fail "job inspect $1: $line"
}
cycle() { # gib jid log [dump flags...]
  local gib=$1 jid=$2 log=$3; shift 3
  local before out
  before=$(last_step "$log")
  T0=$(now_ms); out=$("$CEDANA" dump job "$jid" --json "$@") || fail "dump of $jid failed"
  record "$gib" "dump $*" "$out" "$(wall_ms)"
  T0=$(now_ms); out=$("$CEDANA" restore job "$jid" --json) || fail "restore of $jid failed"
  record "$gib" restore "$out" "$(wall_ms)"
  wait_steps "$log" $((before + 3))
  cuda_running "$jid"
  prune "$jid"
}

for gib in $GIBS; do
  jid=gpu$gib
  app=("$PYTHON" "$HERE/app.py")
  [ "$FAKE_GPU" = 1 ] && app=(bash -c "$APP_CMD")
  GIB=$gib "$CEDANA" run process --gpu-enabled --jid "$jid" -- env GIB="$gib" "${app[@]}" >/dev/null ||
    fail "cannot start the job"
  log=$WORK/cedana-output-$jid.log
  wait_steps "$log" 3
  cuda_running "$jid"
  say "$gib GiB: dump + restore"
  cycle "$gib" "$jid" "$log"
  say "$gib GiB: leave-running, then restore the copy after killing the original"
  T0=$(now_ms); out=$("$CEDANA" dump job "$jid" --leave-running --json) || fail "leave-running dump failed"
  record "$gib" "dump --leave-running" "$out" "$(wall_ms)"
  wait_steps "$log" $(($(last_step "$log") + 2))
  "$CEDANA" job kill "$jid" >/dev/null
  for _ in $(seq 100); do "$CEDANA" ps | grep -q "^$jid .*halted" && break; sleep 0.1; done
  T0=$(now_ms); out=$("$CEDANA" restore job "$jid" --json) || fail "restore of the leave-running checkpoint failed"
  record "$gib" "restore (copy)" "$out" "$(wall_ms)"
  wait_steps "$log" $(($(last_step "$log") + 3))
  prune "$jid"
  say "$gib GiB: $CYCLES cycles"
  copy_from=$(last_step "$log")
  for _ in $(seq "$CYCLES"); do cycle "$gib" "$jid" "$log"; done
  # (the restored copy of the leave-running dump counts again from the dump's step: check after it)
  in_order "$log" "$copy_from"
  if [ "$FAKE_GPU" != 1 ]; then
    say "$gib GiB: restore while another process holds the GPU memory"
    "$CEDANA" dump job "$jid" >/dev/null || fail "dump failed"
    "$PYTHON" -c '
import torch, time
free, _ = torch.cuda.mem_get_info()
x = torch.empty((free - (256 << 20)) // 4, dtype=torch.float32, device="cuda")  # leave 256 MiB
print("hog", flush=True); time.sleep(3600)' >"$WORK/hog.log" 2>&1 &
    HOG=$!
    for _ in $(seq 300); do grep -q hog "$WORK/hog.log" && break; sleep 0.1; done
    if "$CEDANA" restore job "$jid" 2>"$WORK/refused.txt"; then fail "restore should have been refused"; fi
    grep -q "not enough free GPU memory" "$WORK/refused.txt" || fail "unexpected error: $(cat "$WORK/refused.txt")"
    echo "refused as expected: $(cat "$WORK/refused.txt")"
    kill -9 "$HOG"; HOG=
    sleep 2
    "$CEDANA" restore job "$jid" >/dev/null || fail "restore after the memory was freed failed"
    wait_steps "$log" $(($(last_step "$log") + 3))
    prune "$jid"
  fi
  "$CEDANA" job kill "$jid" >/dev/null
done

if [ "${MULTI:-1}" = 1 ]; then
  # Two CUDA processes in one job (as with data-loader workers or two ranks on one GPU): every one
  # is locked and checkpointed, and both go on after the restore. Each writes its own log (APP_OUT).
  say "2 CUDA processes in one job: dump + restore, twice"
  jid=gpumulti la=$WORK/multi-a.log lb=$WORK/multi-b.log
  app=("$PYTHON" "$HERE/app.py")
  [ "$FAKE_GPU" = 1 ] && app=(bash -c "$APP_CMD")
  "$CEDANA" run process --gpu-enabled --jid "$jid" -- bash -c \
    'APP_OUT=$1 GIB=0.5 "${@:3}" & APP_OUT=$2 GIB=0.5 "${@:3}" & wait' multi "$la" "$lb" "${app[@]}" \
    >/dev/null || fail "cannot start the 2-process job"
  wait_steps "$la" 3
  wait_steps "$lb" 3
  cuda_running "$jid" 2
  for i in 1 2; do
    a=$(last_step "$la") b=$(last_step "$lb")
    T0=$(now_ms); out=$("$CEDANA" dump job "$jid" --json) || fail "dump of $jid failed"
    record 0.5x2 "dump " "$out" "$(wall_ms)"
    T0=$(now_ms); out=$("$CEDANA" restore job "$jid" --json) || fail "restore of $jid failed"
    record 0.5x2 restore "$out" "$(wall_ms)"
    wait_steps "$la" $((a + 3))
    wait_steps "$lb" $((b + 3))
    cuda_running "$jid" 2
    prune "$jid"
  done
  in_order "$la" 0
  in_order "$lb" 0
  "$CEDANA" job kill "$jid" >/dev/null
fi

say "results (ms; size in bytes)"
echo -e "GiB\tphase\twall ms\ttimings\timage bytes"
cat "$RESULTS"
echo PASS
