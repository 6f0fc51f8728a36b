#!/usr/bin/env bash
# GPU dump/restore bench on a real NVIDIA machine (offline bundle installed, run as root). For
# each size: the raw sequence (driver API calls through src/gpu + criu: tests/gpu/run_on_gpu.sh,
# CRIU_CYCLES full cycles), then cedana (tests/gpu/cedana_on_gpu.sh: 4 plain dump/restore cycles
# besides its other checks), in the same run; then bench/gpu_compare.ts's table. A size that fails
# does not stop the next one; the exit status says whether all passed.
#   DENO=deno CRIU=criu CEDANA=cedana PYTHON=python3 GIBS="1 8" CRIU_CYCLES=3 CYCLES=3 WORK=dir
#   (cedana gets CYCLES+1 plain samples per size, raw CRIU_CYCLES)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DENO=${DENO:-deno}
WORK=${WORK:-$(mktemp -d /tmp/cedana-gpu-bench.XXXXXX)}
export CRIU_CYCLES=${CRIU_CYCLES:-3}
status=0
for gib in ${GIBS:-1 8}; do
  mkdir -p "$WORK/raw-$gib" "$WORK/cedana-$gib"
  WORK=$WORK/raw-$gib GIBS=$gib DENO=$DENO bash "$HERE/../tests/gpu/run_on_gpu.sh" || status=1
  # the 2-process job once, with the first size
  WORK=$WORK/cedana-$gib GIBS=$gib MULTI=${multi-1} bash "$HERE/../tests/gpu/cedana_on_gpu.sh" || status=1
  multi=0
done
"$DENO" run -A --no-config --no-lock "$HERE/gpu_compare.ts" "$WORK"/raw-* "$WORK"/cedana-*
exit $status
