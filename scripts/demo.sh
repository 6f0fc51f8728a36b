#!/usr/bin/env bash
# The main job, end to end: set up the machine, start a daemon, run a job, list it, checkpoint it,
# restore it, and show that its output continues. Uses a private socket/DB/log dir under /tmp so
# it never disturbs a daemon already running on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="/usr/local/bin:$PATH"
dir=$(mktemp -d /tmp/cedana-demo.XXXXXX)
export CEDANA_ADDRESS=$dir/cedana.sock CEDANA_DB_PATH=$dir/cedana.db CEDANA_OUTPUT_DIR=$dir \
  CEDANA_CHECKPOINT_DIR=$dir/checkpoints CEDANA_CONFIG_DIR=$dir
mkdir -p "$CEDANA_CHECKPOINT_DIR"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

cedana daemon start >"$dir/daemon.log" 2>&1 &
daemon=$!
trap 'cedana job kill --all >/dev/null 2>&1 || true; kill $daemon 2>/dev/null || true' EXIT
for _ in $(seq 50); do cedana daemon check >/dev/null 2>&1 && break; sleep 0.1; done

step cedana check
step cedana run process --jid demo -- sh -c 'i=0; while :; do echo "count $i"; i=$((i+1)); sleep 0.5; done'
sleep 2
step cedana ps
if cedana dump --help >/dev/null 2>&1; then
  step cedana dump job demo
  step cedana ps
  step cedana restore job demo
  sleep 2
  step cedana ps
fi
step tail -n 5 "$dir/cedana-output-demo.log"
step cedana job kill demo
step cedana daemon stop
echo; echo "demo files (socket, DB, log, checkpoints) are in $dir"
