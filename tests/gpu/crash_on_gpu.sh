#!/usr/bin/env bash
# The daemon killed (SIGKILL) in the middle of a GPU dump and of a GPU restore, on a real NVIDIA
# machine: the next daemon must give the CUDA process its GPU state back, so that the job goes on
# with its data intact, instead of hanging at its next CUDA call, locked or checkpointed.
# The daemon kills itself at the point through CEDANA_FAULT (src/daemon/fault.ts):
#   1. dump-after-gpu-checkpoint: the GPU memory is in host memory, CRIU has not run. The next
#      daemon restores and unlocks the process; the job was never stopped; no checkpoint recorded.
#   2. restore-before-gpu: CRIU restored the job, its GPU state is not back. The next daemon
#      restores and unlocks it; the job goes on from the step it was dumped at.
# After each, a plain dump + restore must still work. One self-checking app.py job of GIB GiB.
#   CEDANA=cedana PYTHON=python3 GIB=1 WORK=dir   (run as root)
#   FAKE_GPU=1: test hook (no GPU): APP_CMD runs instead of app.py (crash_on_gpu_test.ts)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CEDANA=${CEDANA:-cedana}
PYTHON=${PYTHON:-python3}
GIB=${GIB:-1}
FAKE_GPU=${FAKE_GPU:-0}
WORK=${WORK:-$(mktemp -d /tmp/cedana-gpu-crash.XXXXXX)}
. "$HERE/lib.sh"
daemon_env
DAEMON=
cleanup() {
  "$CEDANA" job kill --all >/dev/null 2>&1 || true
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root"
jid=gpucrash
log=$WORK/cedana-output-$jid.log

stop_daemon() { # waits for the daemon to be gone (a SIGKILLed one already is)
  kill "$DAEMON" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DAEMON" 2>/dev/null && fail "the daemon did not stop"
  wait "$DAEMON" 2>/dev/null
  DAEMON=
}
crash_during() { # fault cedana-args...: a daemon that kills itself at `fault` runs the command
  local fault=$1 t0
  shift
  stop_daemon
  mv "$WORK/daemon.log" "$WORK/daemon-before-$fault.log" 2>/dev/null
  CEDANA_FAULT=$fault start_daemon
  mv "$WORK/daemon.log" "$WORK/daemon-$fault.log"
  if "$CEDANA" "$@" >"$WORK/crash-$fault.txt" 2>&1; then fail "cedana $* succeeded: no crash at $fault"; fi
  for _ in $(seq 100); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DAEMON" 2>/dev/null && fail "the daemon did not die at $fault"
  wait "$DAEMON" 2>/dev/null
  echo "the daemon died at $fault; the CLI said: $(tail -1 "$WORK/crash-$fault.txt")"
  t0=$(now_ms)
  start_daemon
  # the next daemon gives the GPU state back as it starts: wait for the job's CUDA process running
  for _ in $(seq 600); do
    "$CEDANA" job inspect "$jid" 2>/dev/null | grep -Eq '^CUDA:.*[0-9]+: running' && break
    sleep 0.1
  done
  echo "the next daemon had the job on the GPU after $(($(now_ms) - t0)) ms (daemon start included)"
  cuda_running "$jid"
}
cuda_running() { # jid: `job inspect` shows the job's CUDA process running on the GPU
  local line
  line=$("$CEDANA" job inspect "$1" | grep '^CUDA:') || fail "job inspect $1 shows no CUDA line"
  echo "$line"
  echo "$line" | grep -Eq '[0-9]+: running' && ! echo "$line" | grep -Eq 'locked|checkpointed|failed' ||
    fail "job inspect $1: $line"
}
checkpoints() { "$CEDANA" checkpoints "$jid" --json | json 'len(d)'; }
cycle() { # a plain dump + restore; the job must go on
  local before
  before=$(last_step "$log")
  "$CEDANA" dump job "$jid" >/dev/null || fail "dump of $jid failed"
  "$CEDANA" restore job "$jid" >/dev/null || fail "restore of $jid failed"
  wait_steps "$log" $((before + 3))
  cuda_running "$jid"
}

start_daemon
app=("$PYTHON" "$HERE/app.py")
[ "$FAKE_GPU" = 1 ] && app=(bash -c "$APP_CMD")
"$CEDANA" run process --gpu-enabled --jid "$jid" -- env GIB="$GIB" "${app[@]}" >/dev/null ||
  fail "cannot start the job"
wait_steps "$log" 3
cuda_running "$jid"
pid=$("$CEDANA" ps --json | json '[j["pid"] for j in d if j["jid"] == "'$jid'"][0]')

say "daemon killed after the GPU checkpoint, before CRIU"
crash_during dump-after-gpu-checkpoint dump job "$jid"
[ "$("$CEDANA" ps --json | json '[j["pid"] for j in d if j["jid"] == "'$jid'"][0]')" = "$pid" ] ||
  fail "the job is not the same process any more"
[ "$(checkpoints)" = 0 ] || fail "a checkpoint was recorded for a dump that never ran CRIU"
wait_steps "$log" $(($(last_step "$log") + 3))
in_order "$log"
say "then a dump + restore"
cycle

say "daemon killed after CRIU restored the job, before its GPU restore"
"$CEDANA" dump job "$jid" >/dev/null || fail "dump of $jid failed"
dumped=$(last_step "$log")
crash_during restore-before-gpu restore job "$jid"
"$CEDANA" ps | grep -E "^$jid " | grep -q halted && fail "the job is recorded halted: $("$CEDANA" ps)"
wait_steps "$log" $((dumped + 3))
in_order "$log"
say "then a dump + restore"
cycle
in_order "$log"
grep -q MISMATCH "$log" && fail "workload mismatch: $(grep MISMATCH "$log" | head -1)"
"$CEDANA" job kill "$jid" >/dev/null
echo PASS
