#!/usr/bin/env bash
# Builds cedana for machines with no network access:
#   bash scripts/bundle.sh          -> dist/cedana-bundle-linux-<arch>.tar.gz (unpack, run ./cedana/install.sh)
#   bash scripts/bundle.sh --sfx    -> dist/cedana-linux-<arch>: ONE self-extracting executable
# Both hold the Deno runtime, the program with its npm dependencies already cached (run with
# --cached-only: nothing is downloaded), CRIU >= 4.2 with its own loader and libraries, and the
# GPU test script. The self-extracting file unpacks itself into a versioned cache directory on
# its first run and execs from there; it needs only sh, tar and gzip on the target.
# (Where Deno's runtime base can be downloaded, `deno compile` builds a true single binary: the
# release workflow in .github does that.)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
arch=$(uname -m)
version=$(sed -n 's/.*VERSION = "\(.*\)".*/\1/p' src/version.ts)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
deno_bin=$(readlink -f "$(command -v deno)")
criu_dir=${CEDANA_CRIU_DIR:-/opt/cedana/criu}
[ -x "$criu_dir/bin/criu" ] || { echo "no CRIU bundle at $criu_dir: run scripts/setup.sh first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/cedana
mkdir -p "$stage/bin" "$stage/app" "$stage/deno_dir" dist
cp "$deno_bin" "$stage/bin/deno"
cp -r main.ts deno.json deno.lock src "$stage/app/"
mkdir -p "$stage/app/tests" && cp -r tests/gpu tests/workloads tests/helpers.ts tests/cr_helpers.ts "$stage/app/tests/"
cp -a "$criu_dir" "$stage/criu"
# cache every dependency (npm packages included) inside the bundle
DENO_DIR=$stage/deno_dir "$stage/bin/deno" cache --quiet --config "$stage/app/deno.json" "$stage/app/main.ts" \
  "$stage/app/src/commands/mod.ts" # (main.ts loads the full CLI lazily: not in its static graph)
printf '%s %s\n' "$version" "$commit" >"$stage/VERSION"

cat >"$stage/cedana" <<'SH'
#!/bin/sh
# cedana from an offline bundle: its own Deno, dependencies and CRIU; nothing is downloaded.
# (no subprocess unless started through a symlink: each costs ~1 ms of every command's start)
f=$0
[ -L "$f" ] && f=$(readlink -f "$f")
case $f in */*) H=${f%/*} ;; *) H=. ;; esac
# (CEDANA_LAUNCHER: `cedana daemon install` writes this launcher into the unit, not the bare Deno)
export DENO_DIR="$H/deno_dir" DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 CEDANA_LAUNCHER="$H/cedana"
case ":$PATH:" in *":$H/criu/bin:"*) ;; *) PATH="$H/criu/bin:$PATH" ;; esac
export PATH
exec "$H/bin/deno" run --cached-only --quiet -A --config "$H/app/deno.json" "$H/app/main.ts" "$@"
SH
cat >"$stage/install.sh" <<'SH'
#!/bin/sh
# Installs this bundle under /opt/cedana/<version> and links `cedana` (and `criu`, unless a
# working CRIU >= 4.2 is already on PATH) into /usr/local/bin. Run as root.
set -eu
# (no subprocess unless started through a symlink: each costs ~1 ms of every command's start)
f=$0
[ -L "$f" ] && f=$(readlink -f "$f")
case $f in */*) H=${f%/*} ;; *) H=. ;; esac
V=$(cut -d' ' -f1 "$H/VERSION")
dest=/opt/cedana/$V
mkdir -p /opt/cedana
rm -rf "$dest.new" && cp -a "$H" "$dest.new" && rm -rf "$dest" && mv "$dest.new" "$dest"
ln -sf "$dest/cedana" /usr/local/bin/cedana
ok=0
if command -v criu >/dev/null 2>&1; then
  v=$(criu --version 2>/dev/null | awk '/^Version:/{print $2}')
  case "$v" in 4.[2-9]* | 4.[1-9][0-9]* | [5-9].*) criu check >/dev/null 2>&1 && ok=1 ;; esac
fi
[ "$ok" = 1 ] || ln -sf "$dest/criu/bin/criu" /usr/local/bin/criu
echo "installed cedana $V into $dest"
/usr/local/bin/cedana --version
SH
chmod +x "$stage/cedana" "$stage/install.sh"

if [ "$mode" != "--sfx" ]; then
  out=dist/cedana-bundle-linux-$arch.tar.gz
  tar -C "$work" -czf "$out" cedana
  echo "$out ($(du -h "$out" | cut -f1))"
  exit 0
fi

# Self-extracting: a sh stub, then the gzip'd tarball. The cache key is the payload's checksum,
# so a new build never runs an old unpacked copy.
payload=$work/payload.tar.gz
tar -C "$work" -czf "$payload" cedana
sum=$(sha256sum "$payload" | cut -c1-16)
out=dist/cedana-linux-$arch
cat >"$out" <<SH
#!/bin/sh
# cedana $version ($commit): a self-extracting bundle (Deno runtime, program, CRIU). No network.
set -e
key=$version-$sum
base=\${CEDANA_CACHE_DIR:-\${XDG_CACHE_HOME:-\$HOME/.cache}/cedana}
# (this file's path: \`cedana daemon install\` points the unit at it, not into the cache)
case \$0 in /*) CEDANA_SFX=\$0 ;; *) CEDANA_SFX=\$PWD/\$0 ;; esac
export CEDANA_SFX
# already unpacked: go straight on (no subprocess on the way: every command's start pays for it)
[ -x "\$base/\$key/cedana/cedana" ] && exec "\$base/\$key/cedana/cedana" "\$@"
if ! { mkdir -p "\$base" && [ -w "\$base" ]; } 2>/dev/null; then
  # no writable HOME: a per-user dir in /tmp, which must really be ours (anyone can create one)
  base=/tmp/cedana-\$(id -u)
  mkdir -p -m 700 "\$base" 2>/dev/null || true
  if [ -L "\$base" ] || [ ! -O "\$base" ]; then
    echo "cedana: \$base is not yours: remove it, or set CEDANA_CACHE_DIR" >&2
    exit 1
  fi
fi
dir=\$base/\$key
if [ ! -x "\$dir/cedana/cedana" ]; then
  tmp=\$(mktemp -d "\$base/.unpack.XXXXXX")
  tail -c +PAYLOAD_OFFSET "\$0" | tar -xzf - -C "\$tmp"
  # rename(2) is atomic and refuses a non-empty target: of runs racing here the first to finish
  # wins and the others use its copy (no run deletes a tree another one already runs from)
  if ! mv -T "\$tmp" "\$dir" 2>/dev/null; then
    if [ -x "\$dir/cedana/cedana" ]; then rm -rf "\$tmp"; else rm -rf "\$dir" && mv -T "\$tmp" "\$dir"; fi
  fi
  # Each version unpacks to ~150 MB: drop the other versions unless a process still runs from one
  # (a daemon of the old version execs its own CRIU and reads its own files until it stops).
  for old in "\$base"/*; do
    [ "\$old" = "\$dir" ] || [ ! -d "\$old" ] && continue
    busy=
    for exe in /proc/[0-9]*/exe; do
      case "\$(readlink "\$exe" 2>/dev/null)" in "\$old"/*) busy=1; break ;; esac
    done
    [ -n "\$busy" ] || rm -rf "\$old" 2>/dev/null || true
  done
fi
exec "\$dir/cedana/cedana" "\$@"
SH
# the stub's length decides where the payload starts: a fixed-width number keeps it stable
offset=$(($(wc -c <"$out") + 1))
sed -i "s/PAYLOAD_OFFSET/$(printf '%014d' "$offset")/" "$out"
cat "$payload" >>"$out"
chmod +x "$out"
echo "$out ($(du -h "$out" | cut -f1))"
