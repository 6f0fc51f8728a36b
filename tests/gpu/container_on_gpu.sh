#!/usr/bin/env bash
# CUDA processes INSIDE A RUNC CONTAINER, checkpointed through cedana (daemon + CLI): the GPU steps
# (lock, GPU checkpoint, GPU restore, unlock) around `runc checkpoint` / `runc restore`. The
# container gets new host PIDs on every restore; cedana finds its CUDA processes again by their
# PID inside the container.
#
# The container's root filesystem is the host's, read-only (each top-level directory bind-mounted,
# so python, torch and the driver's libraries are where the host has them), with a tmpfs /tmp and
# the GPU devices (/dev/nvidia*) bound in and allowed; it shares the host's network (no iptables
# needed). The job:
#   1. run (cedana run runc; the CUDA process is found at dump time: no --gpu-enabled for runc)
#   2. CYCLES (2) dump/restore cycles: the job counts on with its GPU data intact, and after each
#      restore `job inspect` shows its CUDA process running
#   3. dump --leave-running, then `restore runc --path P --id NEW`: a copy next to the original,
#      both counting on (each with its own GPU state)
#   4. kill and delete both: no container left in `runc list`
#
#   CEDANA=cedana  PYTHON=python3 (with CUDA torch)  GIB=1  CYCLES=2  RUNC=runc  WORK=dir
#   FAKE_GPU=1: test hook (no GPU): APP_CMD runs instead of app.py (see container_on_gpu_test.ts)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CEDANA=${CEDANA:-cedana}
PYTHON=${PYTHON:-python3}
GIB=${GIB:-1}
CYCLES=${CYCLES:-2}
RUNC=${RUNC:-runc}
FAKE_GPU=${FAKE_GPU:-0}
WORK=${WORK:-$(mktemp -d /tmp/cedana-gpu-ctr.XXXXXX)}
. "$HERE/lib.sh"
daemon_env
mkdir -p "$WORK/runc"
ROOT=$WORK/runc
DAEMON=
cleanup() {
  "$CEDANA" job kill --all >/dev/null 2>&1 || true
  for id in $("$RUNC" --root "$ROOT" list -q 2>/dev/null); do "$RUNC" --root "$ROOT" delete -f "$id" 2>/dev/null; done
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root"
command -v "$RUNC" >/dev/null || fail "no runc (RUNC=path)"
if [ "$FAKE_GPU" != 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$WORK/gpu.txt" ||
    fail "no NVIDIA GPU"
  "$PYTHON" -c 'import torch; assert torch.cuda.is_available()' || fail "$PYTHON needs CUDA torch"
fi

# ---- the bundle: the host's directories read-only, the GPU devices, the host's network ----------
BUNDLE=$WORK/bundle
mkdir -p "$BUNDLE/rootfs"
(cd "$BUNDLE" && "$RUNC" spec) || fail "runc spec failed"
app="exec env GIB=$GIB $PYTHON $HERE/app.py"
[ "$FAKE_GPU" = 1 ] && app=$APP_CMD
python3 - "$BUNDLE" "$WORK" "$HERE" "$app" <<'PY' || fail "cannot write the bundle's config"
import json, os, re, sys
bundle, work, here, app = sys.argv[1:]
cfg = json.load(open(f"{bundle}/config.json"))
cfg["process"]["terminal"] = False
cfg["process"]["args"] = ["/bin/sh", "-c", app]
cfg["process"]["cwd"] = "/"
cfg["process"]["env"] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp"]
cfg["root"] = {"path": "rootfs", "readonly": True}
skip = {"proc", "sys", "dev", "run", "tmp", "lost+found"}
mounts = cfg["mounts"]
for name in sorted(os.listdir("/")):
    path = f"/{name}"
    if name in skip or os.path.islink(path) or not os.path.isdir(path):
        continue
    mounts.append({"destination": path, "type": "bind", "source": path, "options": ["bind", "ro"]})
# Mounts below those directories (on the H100 machine /usr/local/nvidia, of a file system CRIU
# cannot dump: "unsupported id 117") each get their own bind mount, not a recursive one: runc
# hands CRIU the bind mounts of config.json as external mounts, which CRIU then leaves alone.
def unescape(p):  # mountinfo writes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p)
subs = set()
for line in open("/proc/self/mountinfo"):
    point = unescape(line.split()[4])
    top = point.split("/")[1] if point != "/" else ""
    if point.count("/") > 1 and top not in skip and os.path.isdir(point) and not point.startswith(bundle):
        subs.add(point)
for point in sorted(subs, key=lambda p: (p.count("/"), p)):  # parents first
    mounts.append({"destination": point, "type": "bind", "source": point, "options": ["bind", "ro"]})
for name in sorted(os.listdir("/")):  # /bin -> usr/bin etc. on merged-/usr systems
    if os.path.islink(f"/{name}"):
        os.symlink(os.readlink(f"/{name}"), f"{bundle}/rootfs/{name}")
    elif name not in skip and os.path.isdir(f"/{name}"):
        os.makedirs(f"{bundle}/rootfs/{name}", exist_ok=True)
for d in ("proc", "sys", "dev", "run", "tmp"):
    os.makedirs(f"{bundle}/rootfs/{d}", exist_ok=True)
# a writable /tmp (caches), then the script's directory and the work directory (logs, the fake
# driver) at the same paths as on the host
mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
for path, opts in ((here, ["rbind", "ro"]), (work, ["rbind", "rw"])):
    mounts.append({"destination": path, "type": "bind", "source": path, "options": opts})
for dev in sorted(os.listdir("/dev")):
    if dev.startswith("nvidia") and not os.path.isdir(f"/dev/{dev}"):
        mounts.append({"destination": f"/dev/{dev}", "type": "bind", "source": f"/dev/{dev}", "options": ["bind", "rw"]})
cfg["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
json.dump(cfg, open(f"{bundle}/config.json", "w"), indent=2)
PY

"$CEDANA" --version
start_daemon

cuda_running() { # jid: `job inspect` shows the job's CUDA process running (within 5 s)
  local out line
  for _ in $(seq 50); do
    out=$("$CEDANA" job inspect "$1")
    line=$(echo "$out" | grep '^CUDA:')
    echo "$line" | grep -Eq '[0-9]+: running' && ! echo "$line" | grep -Eq 'locked|checkpointed|failed' && return 0
    sleep 0.1
  done
  "$CEDANA" ps >&2
  fail "job inspect $1 does not show its CUDA process running: $out"
}
timings() { json '" ".join(f"{k}={v}" for k, v in d.get("timings", {}).items() if k.startswith("gpu") or k in ("total", "plugin_restore", "criu_dump"))'; }

say "CUDA in a runc container ($GIB GiB): run"
"$CEDANA" run runc --jid gctr --id gctr1 --root "$ROOT" --bundle "$BUNDLE" >/dev/null || fail "cannot start the container"
log=$WORK/cedana-output-gctr.log
wait_steps "$log" 3
for i in $(seq "$CYCLES"); do
  say "cycle $i: dump + restore"
  before=$(last_step "$log")
  out=$("$CEDANA" dump job gctr --json) || fail "dump of gctr failed"
  echo "$out" | json '"dump: " + str(d.get("gpu"))' | grep -q "pids" || fail "the dump found no CUDA process: $out"
  echo "dump:    $(echo "$out" | timings)"
  out=$("$CEDANA" restore job gctr --json) || fail "restore of gctr failed"
  echo "restore: $(echo "$out" | timings)"
  wait_steps "$log" $((before + 3))
  cuda_running gctr
done
in_order "$log" 0

say "leave-running, then a copy under a new id next to the original"
out=$("$CEDANA" dump job gctr --leave-running --json) || fail "leave-running dump failed"
path=$(echo "$out" | json 'd["checkpoint"]["path"]')
wait_steps "$log" $(($(last_step "$log") + 2))
restore_copy() { # jid
  out=$("$CEDANA" restore runc --path "$path" --bundle "$BUNDLE" --root "$ROOT" --id gctr2 --jid "$1" --json \
    2>"$WORK/copy.err")
}
copy=gcopy
if restore_copy "$copy"; then
  wait_steps "$log" $(($(last_step "$log") + 3))
  cuda_running gctr
  kill_jobs="gctr $copy"
else
  # This container shares the host's network namespace, where abstract unix socket names are one
  # namespace-wide set: a copy of a process holding one (CUDA jobs can) cannot bind it again while
  # the original lives (CRIU: "Address already in use"). Then the copy replaces the original.
  cat "$WORK/copy.err"
  grep -q "Address already in use" "$WORK/copy.err" || fail "restoring a copy failed"
  pid=$("$RUNC" --root "$ROOT" state gctr1 | json 'd["pid"]')
  inodes=$(for f in /proc/"$pid"/fd/*; do readlink "$f"; done 2>/dev/null | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
  echo "abstract unix sockets bound by the container's process (host network namespace):"
  for i in $inodes; do awk -v i="$i" '$7 == i && $8 ~ /^@/ { print "  " $8 " (inode " i ")" }' /proc/net/unix; done
  echo "so the original is killed and the copy restored under the new id in its place"
  "$CEDANA" job kill gctr >/dev/null || fail "kill failed"
  for _ in $(seq 100); do "$CEDANA" ps | grep -qE '^gctr .*halted' && break; sleep 0.1; done
  "$CEDANA" job delete "$copy" >/dev/null 2>&1 # (a record the failed restore may have left)
  copy=gcopy2
  restore_copy "$copy" || { cat "$WORK/copy.err"; fail "restoring the copy after the original was killed failed"; }
  kill_jobs=$copy
fi
echo "restore (copy): $(echo "$out" | timings)"
copylog=$(echo "$out" | json 'd["job"]["log"]')
wait_steps "$copylog" $(($(last_step "$copylog") + 3))
cuda_running "$copy"

say "kill and delete both"
"$CEDANA" job kill $kill_jobs >/dev/null || fail "kill failed"
for _ in $(seq 100); do [ "$("$CEDANA" ps | grep -cE '^gc(tr|opy2?) .*halted')" = 2 ] && break; sleep 0.1; done
"$CEDANA" job delete gctr "$copy" >/dev/null || fail "delete failed"
[ -z "$("$RUNC" --root "$ROOT" list -q)" ] || fail "containers left: $("$RUNC" --root "$ROOT" list -q)"
echo PASS
