# Helpers shared by the GPU-machine scripts (cedana_on_gpu.sh, container_on_gpu.sh,
# bench/gpu_alternate.sh). Sourced; they expect WORK set. Workload logs hold app.py's step lines.
fail() { echo "FAIL: $*" >&2; echo "logs in $WORK" >&2; exit 1; }
say() { echo "== $*"; }
daemon_env() { # a daemon of this script's own: socket, DB, config, logs and checkpoints in WORK
  mkdir -p "$WORK/ck"
  export CEDANA_ADDRESS=$WORK/cedana.sock CEDANA_DB_PATH=$WORK/cedana.db CEDANA_CONFIG_DIR=$WORK \
    CEDANA_OUTPUT_DIR=$WORK CEDANA_CHECKPOINT_DIR=$WORK/ck
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
last_step() { grep -sE '^[0-9]+ ' "$1" | tail -1 | cut -d' ' -f1; } # (-s: a log may not exist yet)
wait_steps() { # log, at least (an 8 GiB job's restore can take a minute and more)
  for _ in $(seq 1200); do
    grep -qs MISMATCH "$1" && fail "workload mismatch in $1: $(grep MISMATCH "$1" | head -1)"
    s=$(last_step "$1")
    [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "workload stalled at step $(last_step "$1") in $1 (wanted $2)"
}
in_order() { # log [from step]: every step after `from` follows the one before (no replay, no gap)
  awk -v from="${2:-0}" '/^[0-9]+ / { if ($1 > from && prev && $1 != prev + 1) { print "step " prev " then " $1; bad = 1 }
    if ($1 >= from) prev = $1 } END { exit bad }' "$1" || fail "$1: the job's steps are out of order"
}
start_daemon() { # cedana's daemon on the CEDANA_* settings; sets DAEMON
  "$CEDANA" daemon start >"$WORK/daemon.log" 2>&1 &
  DAEMON=$!
  for _ in $(seq 100); do "$CEDANA" ps >/dev/null 2>&1 && break; sleep 0.1; done
}
