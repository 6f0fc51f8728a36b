#!/usr/bin/env bash
# Paired GPU bench: cedana's dump/restore and the raw sequence (driver API calls through src/gpu
# + criu, tests/gpu/probe.ts) taking turns on two live copies of the same workload, so that the
# machine's drift (page cache, GPU clocks, disk) falls on both sides alike. gpu_bench.sh runs all
# raw cycles first and cedana's after; at 1 GiB the raw sequence itself moved by 25% between
# runs there, more than the 10% being judged.
#
# Per round: a raw cycle (lock, GPU checkpoint, criu dump, criu restore, GPU restore, unlock) on
# workload R, and a cedana cycle (`cedana dump job` + `cedana restore job`, CLI wall time as a
# user sees it) on job C; the order flips every round. Both workloads check themselves after each
# restore (counter in order, GPU data intact). Prints each round's pair and the medians
# (bench/gpu_compare.ts's table) and exits 1 if a check failed.
# WARMUP (1) rounds come first and are not counted: on a fresh machine the first ~20 GB of page
# cache cost more to touch (H100, session 5: the first raw 8 GiB dump took 10.5-13.9 s, later ones
# 7.4-8.4 s), and the round order raw, cedana, cedana, raw... would lay that on one side.
#   DENO=deno CRIU=criu CEDANA=cedana PYTHON=python3 GIB=1 ROUNDS=6 WARMUP=1 WORK=dir   (run as root)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APP=$HERE/../tests/gpu/app.py
DENO=${DENO:-deno}
CRIU=${CRIU:-criu}
CEDANA=${CEDANA:-cedana}
PYTHON=${PYTHON:-python3}
GIB=${GIB:-1}
ROUNDS=${ROUNDS:-6}
WARMUP=${WARMUP:-1}
WORK=${WORK:-$(mktemp -d /tmp/cedana-gpu-alt.XXXXXX)}
. "$HERE/../tests/gpu/lib.sh"
daemon_env
export DENO_NO_UPDATE_CHECK=1
RESULTS=$WORK/results.tsv
: >"$RESULTS"
DAEMON= RAW_PID=
cleanup() {
  "$CEDANA" job kill --all >/dev/null 2>&1 || true
  [ -n "$RAW_PID" ] && kill -9 "$RAW_PID" 2>/dev/null
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root"
start_daemon

# Raw workload: as in run_on_gpu.sh, a bash session leader waits on it (so criu dump's kill reaps
# it and its PID is free for the restore); dumped and restored with -j.
app=("$PYTHON" "$APP")
[ -n "${APP_CMD:-}" ] && app=(bash -c "$APP_CMD") # test hook (gpu_alternate_test.ts): no torch
RAW_LOG=$WORK/raw-app.log
GIB=$GIB setsid -f bash -c '"$@" </dev/null >"$0" 2>&1 & echo $! >"$0.pid"; wait' \
  "$RAW_LOG" "${app[@]}" </dev/null >/dev/null 2>&1
GIB=$GIB "$CEDANA" run process --gpu-enabled --jid alt -- env GIB="$GIB" "${app[@]}" >/dev/null ||
  fail "cannot start the cedana job"
CED_LOG=$WORK/cedana-output-alt.log
wait_steps "$RAW_LOG" 3
RAW_PID=$(cat "$RAW_LOG.pid")
wait_steps "$CED_LOG" 3
echo "GIB=$GIB, $ROUNDS rounds; raw pid $RAW_PID, cedana job alt"

raw_cycle() { # round (w1, w2...: warm-up, not counted)
  local before log=$WORK/probe-criu-$GIB-$1.log
  [ "${1#w}" = "$1" ] || log=$WORK/warmup-$1.log
  before=$(last_step "$RAW_LOG")
  rm -rf "$WORK/img"
  # In its own session: `criu restore -j` gives the restored task the restorer's session, and where
  # this script's session leader lives outside the PID namespace (CI's sandbox) the next dump
  # would refuse a task whose session CRIU cannot see ("A session leader of P is outside of its
  # pid namespace"). cedana's own CRIU runs get their own session for the same reason.
  setsid -w "$DENO" run -A --no-config --no-lock --no-npm --no-remote "$HERE/../tests/gpu/probe.ts" \
    --pid "$RAW_PID" --images "$WORK/img" --criu "$CRIU" >"$log" 2>&1 || fail "raw cycle $1 (log $log):
$(tail -n 25 "$log")"
  wait_steps "$RAW_LOG" $((before + 3))
  sed -n 's/^RESULT //p' "$log" | json '"raw    dump %.0f ms, restore %.0f ms" % (sum(d["timings"][k] for k in ("lock","gpu checkpoint","criu dump")), sum(d["timings"][k] for k in ("criu restore","gpu restore","unlock")))'
}
cedana_cycle() { # round (w...: warm-up, not counted)
  local before t0 out dump restore id results=$RESULTS
  [ "${1#w}" = "$1" ] || results=/dev/null
  before=$(last_step "$CED_LOG")
  t0=$(now_ms); out=$("$CEDANA" dump job alt --json) || fail "cedana dump failed"
  dump=$(($(now_ms) - t0))
  echo -e "$GIB\tdump\t$dump\t$(echo "$out" | json 'json.dumps(d.get("timings", {}))')\t$(echo "$out" | json 'd["checkpoint"]["size"]')" >>"$results"
  t0=$(now_ms); out=$("$CEDANA" restore job alt --json) || fail "cedana restore failed"
  restore=$(($(now_ms) - t0))
  echo -e "$GIB\trestore\t$restore\t$(echo "$out" | json 'json.dumps(d.get("timings", {}))')\t" >>"$results"
  wait_steps "$CED_LOG" $((before + 3))
  for id in $("$CEDANA" checkpoints alt --json | json '" ".join(c["id"] for c in d[1:])'); do
    "$CEDANA" job checkpoint delete "$id" >/dev/null || fail "cannot delete checkpoint $id"
  done
  echo "cedana dump $dump ms, restore $restore ms (CLI wall time)"
}

for w in $(seq "$WARMUP"); do
  echo "== warm-up round $w (not counted)"
  raw_cycle "w$w"; cedana_cycle "w$w"
done
for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  if [ $((r % 2)) = 1 ]; then raw_cycle "$r"; cedana_cycle "$r"; else cedana_cycle "$r"; raw_cycle "$r"; fi
done
in_order "$RAW_LOG"
in_order "$CED_LOG"
echo "both workloads counted in order through $((ROUNDS + WARMUP)) cycles each, GPU data checked every step"
"$DENO" run -A --no-config --no-lock "$HERE/gpu_compare.ts" "$WORK"
