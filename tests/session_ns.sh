#!/usr/bin/env bash
# Run by sessions_test.ts as PID 1 of a new PID namespace (unshare -pf --mount-proc), from a
# session whose leader is outside it: inside, this shell and what it starts without setsid have
# session 0, as under `kubectl exec` or some CI agents. The daemon runs here too, not in a session
# of its own. Checks, printing one "OK ..." line each (the test looks for them):
#  1. a process in session 0 is adopted, and its dump is refused up front with a clear error;
#  2. a shell job (its session leader in here) goes through two dump/restore cycles: CRIU must
#     not hand the restored job the daemon's session 0, or the second dump fails.
# Usage: session_ns.sh DENO MAIN DIR  (env: CEDANA_* pointing into DIR)
set -uo pipefail
DENO=$1 MAIN=$2 DIR=$3
# Descriptors inherited from outside (a test runner's /dev/null, say) belong to the outer mount
# namespace, which CRIU cannot resolve from in here: only 0-2 (and bash's own script fd) stay.
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  [ "$n" -gt 2 ] && [ "$n" != 255 ] && eval "exec $n>&-"
done
exec </dev/null
c() { "$DENO" run -A --quiet "$MAIN" "$@"; }
die() { echo "FAIL: $*"; echo "--- daemon log"; tail -n 20 "$DIR/daemon.log"; exit 1; }
ticks() { wc -l <"$1"; }
grows() { # log: waits until it has more lines than now
  local n; n=$(ticks "$1")
  for _ in $(seq 100); do [ "$(ticks "$1")" -gt "$n" ] && return 0; sleep 0.05; done
  return 1
}
tick='import time
i = 0
while True:
    i += 1; print(i, flush=True); time.sleep(0.05)'

c daemon start >"$DIR/daemon.log" 2>&1 &
for _ in $(seq 150); do c daemon check >/dev/null 2>&1 && break; sleep 0.1; done
c daemon check >/dev/null 2>&1 || die "daemon did not come up"
[ "$(cut -d' ' -f6 /proc/$$/stat)" = 0 ] || die "this shell's session is visible: not the case under test"

# 1. session 0
python3 -u -c "$tick" >"$DIR/s0.log" 2>&1 </dev/null &
s0=$!
c manage process "$s0" --jid s0 >/dev/null || die "manage s0"
out=$(c dump job s0 2>&1); rc=$?
[ "$rc" = 5 ] || die "dump of a session-0 process: exit $rc, want 5: $out"
case $out in *"session leader is outside this PID namespace"*) ;; *) die "unclear error: $out" ;; esac
grows "$DIR/s0.log" || die "s0 stopped after the refused dump"
echo "OK session 0 refused: $out"

# 2. a shell job whose session leader (a bash in here) waits on it
setsid -f bash -c '"$@" </dev/null >"$0" 2>&1 & echo $! >"$0.pid"; wait' "$DIR/sj.log" python3 -u -c "$tick"
for _ in $(seq 50); do [ -s "$DIR/sj.log.pid" ] && break; sleep 0.05; done
c manage process "$(cat "$DIR/sj.log.pid")" --jid sj >/dev/null || die "manage sj"
grows "$DIR/sj.log" || die "sj does not tick"
for round in 1 2; do
  c dump job sj >/dev/null 2>"$DIR/err" || die "dump $round: $(cat "$DIR/err")"
  c restore job sj >/dev/null 2>"$DIR/err" || die "restore $round: $(cat "$DIR/err")"
  grows "$DIR/sj.log" || die "sj does not tick after restore $round"
done
# the job's own count went on in order through both cycles
awk 'NR != $1 { print "out of order at line " NR ": " $0; bad = 1 } END { exit bad }' "$DIR/sj.log" ||
  die "sj's count"
echo "OK shell job: 2 cycles, $(ticks "$DIR/sj.log") ticks in order"
c job kill --all >/dev/null 2>&1
exit 0
