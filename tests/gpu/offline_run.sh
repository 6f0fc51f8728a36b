#!/usr/bin/env bash
# One unattended GPU check from the offline bundle, for a GPU machine lent for minutes (no
# network): installs the bundle, records the machine, runs bench/gpu_bench.sh (per size: the raw
# probe, then the through-cedana script with its failure case) and packs every log (no images)
# into OUTDIR/gpu-logs.tar.gz. Run as root from a copy of this repository:
#   tests/gpu/offline_run.sh dist/cedana-bundle-linux-x86_64.tar.gz OUTDIR
# GIBS and CRIU_CYCLES as for the bench; BENCH_TIMEOUT (s, default 420) bounds the bench so the
# logs are packed even when something hangs. Then (CONTAINER=1, the default) container_on_gpu.sh:
# CUDA in a runc container, bounded by CTR_TIMEOUT (s, default 180). It needs runc: on PATH, or
# carried as .device/runc.gz (gzip -c /usr/sbin/runc > .device/runc.gz; uses the system's
# libseccomp).
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
echo "== bench in $work"
t0=$(date +%s)
DENO=$home/bin/deno CRIU=criu CEDANA=/usr/local/bin/cedana PYTHON=$(command -v python3) WORK=$work \
  timeout "${BENCH_TIMEOUT:-420}" bash "$repo/bench/gpu_bench.sh"
rc=$?
echo "== bench exit $rc after $(($(date +%s) - t0)) s"
pkill -f "cedana.*daemon start" 2>/dev/null

if [ "${CONTAINER:-1}" = 1 ]; then
  echo "== CUDA in a runc container"
  if ! command -v runc >/dev/null && [ -f "$repo/.device/runc.gz" ]; then
    gzip -dc "$repo/.device/runc.gz" >/usr/local/bin/runc && chmod +x /usr/local/bin/runc
  fi
  if runc --version; then
    t0=$(date +%s)
    CEDANA=/usr/local/bin/cedana PYTHON=$(command -v python3) GIB=1 WORK=$work/ctr \
      timeout "${CTR_TIMEOUT:-180}" bash "$repo/tests/gpu/container_on_gpu.sh"
    crc=$?
    echo "== container check exit $crc after $(($(date +%s) - t0)) s"
    pkill -f "cedana.*daemon start" 2>/dev/null
    [ "$rc" = 0 ] && rc=$crc
  else
    echo "no usable runc: the container check was skipped"
  fi
fi
tar -C "$work" -czf "$out/gpu-logs.tar.gz" --exclude='img-*' --exclude='ck' . || true
exit $rc
