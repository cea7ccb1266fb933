#!/usr/bin/env bash
# Fetch Debian hexter's DX7 factory cartridges (raw .dx7 banks) into DIR without installing the
# plugin: `apt-get download hexter` + `dpkg -x`. Exits non-zero if the package cannot be had.
set -euo pipefail
dir=${1:-.cache/hexter}
if compgen -G "$dir/*.dx7" >/dev/null; then exit 0; fi
if [ -d /usr/share/hexter ] && compgen -G "/usr/share/hexter/*.dx7" >/dev/null; then
  mkdir -p "$dir" && cp /usr/share/hexter/*.dx7 "$dir"/ && exit 0
fi
command -v apt-get >/dev/null || { echo "apt-get not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download hexter >/dev/null 2>&1; then
  # Package lists may be missing on a fresh machine.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
  apt-get download hexter >/dev/null 2>&1 || { echo "apt-get download hexter failed" >&2; exit 1; }
fi
dpkg -x hexter_*.deb x
cd - >/dev/null
mkdir -p "$dir"
cp "$work"/x/usr/share/hexter/*.dx7 "$dir"/
echo "hexter banks in $dir: $(ls "$dir" | tr '\n' ' ')"
