#!/usr/bin/env bash
# Installs everything cedana needs on Debian 12 (bookworm), idempotently:
#   - Deno 2.9 from npm (the npm registry is reachable where JSR and dl.deno.land are not)
#   - CRIU >= 4.2 (bookworm's 3.17 fails on current kernels; sid's 4.2 runs with its own loader)
#   - iptables (CRIU locks container networks with it), util-linux, gcc (test doubles),
#     promtool (prometheus) and systemd-analyze (systemd) for the metrics and unit-file tests
#   - the `cedana` command on PATH (deno install -g into /usr/local)
# Never upgrades the system's libc: sid's libraries live in /opt/cedana/criu.
set -euo pipefail

PREFIX=${CEDANA_PREFIX:-/opt/cedana}
DENO_VERSION=${DENO_VERSION:-2.9.6}
BIN_DIR=${CEDANA_BIN_DIR:-/usr/local/bin}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh must run as root (it installs packages and CRIU)" >&2
    exit 1
  fi
}

# Debian packages: CRIU's network lock (iptables), job tooling, compressors, container runtimes and
# fixtures, promtool (metrics tests), systemd-analyze (unit tests), shells for completion tests.
PACKAGES=(ca-certificates iptables util-linux procps gcc libc6-dev python3 tar gzip zstd lz4
  runc containerd umoci busybox-static prometheus systemd zsh fish)

apt_ready=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_ready" ]; then apt-get update -qq; apt_ready=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts containerd and prometheus as system services; cedana's tests run private containerd
  # instances and only need prometheus' promtool (to validate /metrics)
  for svc in containerd prometheus; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
}

install_deno() {
  local have=""
  if command -v deno >/dev/null 2>&1; then have=$(deno --version 2>/dev/null | awk 'NR==1{print $2}'); fi
  case "$have" in 2.*) log "deno $have already on PATH"; return 0 ;; esac
  log "installing deno $DENO_VERSION from npm into $PREFIX/deno"
  mkdir -p "$PREFIX/deno"
  npm install --silent --no-audit --no-fund --prefix "$PREFIX/deno" "deno@$DENO_VERSION" >/dev/null
  local real
  real=$(find "$PREFIX/deno/node_modules/@deno" -type f -name deno -perm -u+x | head -n1)
  [ -n "$real" ] || { echo "deno binary not found after npm install" >&2; exit 1; }
  ln -sf "$real" "$BIN_DIR/deno"
  deno --version | head -n1 >&2
}

criu_ok() { # $1: a criu binary; true when it is >= 4.2 and `criu check` passes
  local v
  v=$("$1" --version 2>/dev/null | awk '/^Version:/{print $2}') || return 1
  [ -n "$v" ] || return 1
  local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
  { [ "$major" -gt 4 ] || { [ "$major" -eq 4 ] && [ "$minor" -ge 2 ]; }; } || return 1
  "$1" check >/dev/null 2>&1
}

# $1: where. Runs criu.real with its own loader and libraries; spawns no helper process unless
# started through a symlink (runc starts CRIU twice per checkpoint: the old wrapper's three helpers
# cost ~3 ms each time). cedana's src/criu/run.ts recognises it by its "$P/bin/criu.real".
write_criu_wrapper() {
  cat >"$1" <<'WRAP'
#!/bin/sh
# CRIU from Debian sid, run with its own loader and libraries (this system's glibc is older)
f=$0
[ -L "$f" ] && f=$(readlink -f "$f")
case $f in */*) P=${f%/*}/.. ;; *) P=.. ;; esac
exec "$P/lib/ld-linux-x86-64.so.2" --library-path "$P/lib" "$P/bin/criu.real" "$@"
WRAP
  chmod +x "$1"
}

install_criu() {
  # an install by an older setup.sh: same CRIU, faster wrapper
  if grep -qs 'P=$(dirname "$(dirname' "$PREFIX/criu/bin/criu"; then write_criu_wrapper "$PREFIX/criu/bin/criu"; fi
  if command -v criu >/dev/null 2>&1 && criu_ok "$(command -v criu)"; then
    log "criu $(criu --version | awk '/^Version:/{print $2}') already on PATH and passes criu check"
    return 0
  fi
  # bookworm's criu 3.17 shadows a good one and cannot dump on this kernel
  if dpkg-query -W -f='${Status}' criu 2>/dev/null | grep -q 'ok installed'; then
    log "removing Debian's criu (too old for this kernel)"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq criu >/dev/null
  fi
  local dir="$PREFIX/criu" work; work=$(mktemp -d)
  log "fetching CRIU >= 4.2 and its libraries from Debian sid into $dir"
  mkdir -p "$work/lists/partial" "$work/debs"
  cat >"$work/sid.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local o=(-oDir::Etc::SourceList=/dev/null -oDir::Etc::SourceParts="$work/parts" -oDir::State::Lists="$work/lists"
    -oDir::Cache="$work/cache" -oAPT::Architecture=amd64)
  mkdir -p "$work/parts" "$work/cache/archives/partial"; cp "$work/sid.sources" "$work/parts/sid.sources"
  apt-get "${o[@]}" update -qq 2>&1 | grep -v "unsandboxed" >&2 || true
  local pkgs=(criu libcompel1 libc6 libbsd0 libmd0 libgnutls30t64 libnet9 libnftables1 libnl-3-200 libprotobuf-c1
    libuuid1 libp11-kit0 libidn2-0 libunistring5 libtasn1-6 libnettle8t64 libhogweed6t64 libgmp10 libmnl0
    libnftnl11 libxtables12 libjansson4 libffi8 libcap2 libgcc-s1 libzstd1 liblz4-1 libselinux1 libpcre2-8-0)
  (cd "$work/debs" && apt-get "${o[@]}" download "${pkgs[@]}" 2>&1 | grep -v "unsandboxed" >&2 || true)
  rm -rf "$dir.new" && mkdir -p "$dir.new/root"
  for d in "$work/debs"/*.deb; do dpkg -x "$d" "$dir.new/root"; done
  mkdir -p "$dir.new/lib" "$dir.new/bin"
  # flatten every shared library into one directory for --library-path
  # (dereferenced: the packages' symlinks are relative to their own tree)
  find "$dir.new/root" \( -name '*.so.[0-9]*' -o -name 'ld-linux-x86-64.so.2' \) \( -type f -o -type l \) \
    -not -path '*/gconv/*' -exec cp -L {} "$dir.new/lib/" \;
  local real; real=$(find "$dir.new/root" -type f -name criu -path '*bin*' | head -n1)
  cp "$real" "$dir.new/bin/criu.real"
  write_criu_wrapper "$dir.new/bin/criu"
  rm -rf "$dir.new/root" "$dir" && mv "$dir.new" "$dir"
  rm -rf "$work"
  ln -sf "$dir/bin/criu" "$BIN_DIR/criu"
  criu_ok "$BIN_DIR/criu" || { echo "installed criu does not pass 'criu check':" >&2; "$BIN_DIR/criu" check >&2 || true; exit 1; }
  log "criu $("$BIN_DIR/criu" --version | awk '/^Version:/{print $2}') installed"
}

install_cedana() {
  log "installing the cedana command into $BIN_DIR"
  (cd "$HERE" && deno install -q -g -f -A --root "$(dirname "$BIN_DIR")" -n cedana --config deno.json main.ts)
}

main() {
  need_root
  apt_install "${PACKAGES[@]}"
  command -v npm >/dev/null 2>&1 || apt_install npm
  install_deno
  install_criu
  (cd "$HERE" && deno install -q >/dev/null 2>&1 || deno cache main.ts src/commands/mod.ts)
  install_cedana
}

if [ "${1:-}" = "--deps-only" ]; then
  need_root
  apt_install "${PACKAGES[@]}"
  install_deno
  install_criu
  exit 0
fi
main "$@"
