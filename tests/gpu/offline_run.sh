#!/usr/bin/env bash
# One unattended GPU check from the offline bundle, for a GPU machine lent for minutes (no
# network): installs the bundle, records the machine, runs bench/gpu_bench.sh (per size: the raw
# probe, then the through-cedana script with its failure case) and packs every log (no images)
# into OUTDIR/gpu-logs.tar.gz. Run as root from a copy of this repository:
#   tests/gpu/offline_run.sh dist/cedana-bundle-linux-x86_64.tar.gz OUTDIR
# GIBS and CRIU_CYCLES as for the bench; BENCH_TIMEOUT (s, default 420) bounds the bench so the
# logs are packed even when something hangs. Then container_on_gpu.sh: CUDA in a runc container,
# bounded by CTR_TIMEOUT (s, default 180). It needs runc: on PATH, or carried as .device/runc.gz
# (gzip -c /usr/sbin/runc > .device/runc.gz; uses the system's libseccomp). STAGES picks and
# orders the stages (below), DEADLINE bounds them all.
set -uo pipefail
bundle=$(readlink -f "$1")
out=$(readlink -f "$2")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
export PATH=/usr/local/bin:$PATH

echo "== machine"
nvidia-smi || true
uname -a
echo "cpus $(nproc)"
free -g
df -h /tmp /var/tmp /root 2>/dev/null
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' || true

echo "== install"
unpack=$(mktemp -d)
tar -C "$unpack" -xzf "$bundle" && sh "$unpack/cedana/install.sh" || { echo "install failed"; exit 1; }
home=$(dirname "$(readlink -f /usr/local/bin/cedana)")
criu --version | head -1
criu check || true

# The images of an 8 GiB job are 9 GB: work where there is most room.
base=$(df --output=avail,target /tmp /var/tmp /root 2>/dev/null | tail -n +2 | sort -n | tail -1 | awk '{print $2}')
work=${base%/}/cedana-gpu-$(date +%s)
mkdir -p "$work"
pack() { tar -C "$work" -czf "$out/gpu-logs.tar.gz" --exclude='img*' --exclude='ck' . 2>/dev/null || true; }
# Each stage is bounded by its own limit and by what is left of DEADLINE (s from here, default
# none), less 20 s to pack the logs: a lent machine's command limit cuts nothing that matters.
t_start=$(date +%s)
limit() { # own limit (s): the smaller of it and what the deadline leaves
  local left=$((${DEADLINE:-100000} - ($(date +%s) - t_start) - 20))
  [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
rc=0
stage() { # name own-limit command...: runs it bounded, records its exit, packs the logs
  local name=$1 own=$2 t0 lim c
  shift 2
  lim=$(limit "$own")
  if [ "$lim" -lt 30 ]; then echo "== $name: skipped (no time left)"; rc=1; return; fi
  echo "== $name (at most $lim s)"
  t0=$(date +%s)
  timeout "$lim" "$@"
  c=$?
  echo "== $name exit $c after $(($(date +%s) - t0)) s"
  pkill -f "cedana.*daemon start" 2>/dev/null
  [ "$c" = 0 ] || rc=1
  pack
}
runc_ready() {
  if ! command -v runc >/dev/null && [ -f "$repo/.device/runc.gz" ]; then
    gzip -dc "$repo/.device/runc.gz" >/usr/local/bin/runc && chmod +x /usr/local/bin/runc
  fi
  runc --version
}
py=$(command -v python3)
# STAGES, in order: bench (bench/gpu_bench.sh: raw cycles, then cedana's with every check, per size
# in GIBS), container (container_on_gpu.sh), crash (crash_on_gpu.sh, 1 GiB), alt<GiB> (bench/gpu_alternate.sh, ROUNDS, raw and
# cedana cycles taking turns; alt8x3: 8 GiB, 3 rounds).
for s in ${STAGES:-bench container}; do
  case $s in
    bench)
      DENO=$home/bin/deno CRIU=criu CEDANA=/usr/local/bin/cedana PYTHON=$py WORK=$work/bench \
        stage bench "${BENCH_TIMEOUT:-420}" bash "$repo/bench/gpu_bench.sh" ;;
    container)
      if runc_ready; then
        CEDANA=/usr/local/bin/cedana PYTHON=$py GIB=1 WORK=$work/ctr \
          stage "CUDA in a runc container" "${CTR_TIMEOUT:-180}" bash "$repo/tests/gpu/container_on_gpu.sh"
      else
        echo "no usable runc: the container check was skipped"; rc=1
      fi ;;
    crash)
      CEDANA=/usr/local/bin/cedana PYTHON=$py GIB=1 WORK=$work/crash \
        stage "daemon killed mid GPU dump and mid GPU restore" "${CRASH_TIMEOUT:-150}" \
        bash "$repo/tests/gpu/crash_on_gpu.sh" ;;
    alt*) # alt<GiB>[x<rounds>]
      g=${s#alt} g=${g%x*} n=${s##*x}
      [ "$n" = "$s" ] && n=${ROUNDS:-6}
      # (a round of raw + cedana cycles: ~9 s at 1 GiB, ~40 s at 8 GiB on an H100; plus the warm-up)
      alt_limit=${ALT_TIMEOUT:-$((40 + (n + 1) * (8 + 5 * ${g%.*})))}
      DENO=$home/bin/deno CRIU=criu CEDANA=/usr/local/bin/cedana PYTHON=$py GIB=$g ROUNDS=$n WORK=$work/$s \
        stage "paired raw/cedana cycles, $g GiB x $n" "$alt_limit" bash "$repo/bench/gpu_alternate.sh" ;;
    *) echo "unknown stage $s"; rc=1 ;;
  esac
done
exit $rc
