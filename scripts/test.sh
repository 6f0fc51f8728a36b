#!/usr/bin/env bash
# Sets up this machine (scripts/setup.sh, idempotent) and runs every test: unit tests beside the
# code and black-box tests in tests/ (real daemon, real processes, real CRIU). Ends with a plain
# "N passed, N failed" line and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/setup.sh || { echo "setup failed"; exit 1; }
else
  echo "note: not root; skipping setup (checkpoint tests need root)" >&2
fi
export PATH="/usr/local/bin:$PATH" NO_COLOR=1
log=$(mktemp)
# Every temporary file and directory of the run (tests, daemons, checkpoints) goes under one
# scratch directory, removed at the end whatever a test left behind.
scratch=$(mktemp -d /tmp/cedana-tests.XXXXXX)
trap 'rm -rf --one-file-system "$scratch"' EXIT
export TMPDIR=$scratch
deno test -A --no-check=remote src/ tests/ "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
ignored=$(grep -oE '[0-9]+ ignored' <<<"$summary" | cut -d' ' -f1)
rm -f "$log"
if [ -z "$summary" ]; then echo "0 passed, 1 failed"; exit 1; fi
echo "${passed:-0} passed, ${failed:-0} failed${ignored:+, $ignored skipped}"
exit "$rc"
