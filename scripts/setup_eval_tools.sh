#!/usr/bin/env bash
# Idempotent install of the Debian command-line codecs that the classical
# anchors in parahydra_ros/eval/anchors.py drive: x265 (HEVC) and aom-tools
# (aomenc/aomdec, AV1). Decoding HEVC and the VVC anchor use the static ffmpeg
# of the pinned PyPI package imageio-ffmpeg, so no Debian ffmpeg is needed.
# A run with everything installed only queries dpkg (well under a second).
set -euo pipefail

packages=(x265 aom-tools)

missing=()
for pkg in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "[setup-eval] need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  }
  sudo=(sudo)
fi

echo "[setup-eval] installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
{ "${sudo[@]}" apt-get update -qq &&
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 ||
  { cat "$log" >&2; exit 1; }
