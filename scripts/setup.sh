#!/usr/bin/env bash
# Idempotent set-up of everything parahydra_ros needs, from nothing:
#   1. a virtualenv (.venv, or $PARAHYDRA_VENV) with the pinned requirements.txt
#      (PyTorch, CompressAI, OpenCV, rosbags and ROS 2 Kilted wheels from PyPI);
#   2. the CompressedLatent message and this package built with CMake/rosidl
#      and installed into the venv prefix, as colcon would into install/;
#   3. the Debian codecs the evaluation compares against (x265, aom-tools);
#   4. an environment file, $VENV/env.sh, that every other command sources.
# A second run with nothing changed only re-checks stamps and takes seconds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PARAHYDRA_VENV:-$repo/.venv}"
build="$repo/build"
python="${PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  "$python" -m venv "$venv"
fi

req_stamp="$venv/.requirements.sha256"
req_hash="$(sha256sum "$repo/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$req_stamp" 2>/dev/null)" != "$req_hash" ]; then
  say "installing pinned requirements (first time: a few minutes, ~6 GB)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$repo/requirements.txt" \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
  echo "$req_hash" > "$req_stamp"
else
  say "requirements up to date"
fi

# x265 and aom-tools for the classical anchors of `parahydra eval` (apt; skipped when present).
bash "$repo/scripts/setup_eval_tools.sh"

# The ROS wheels keep their CMake packages and libraries in the venv prefix.
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"

if [ ! -f "$build/CMakeCache.txt" ]; then
  say "configuring the message build"
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$venv/bin/python3" -DPARAHYDRA_INSTALL_PYTHON_SOURCES=OFF \
    > "$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
fi
say "building and installing parahydra_ros into $venv"
cmake --build "$build" -j 2 > "$build.build.log" 2>&1 || { cat "$build.build.log"; exit 1; }
cmake --install "$build" > "$build.install.log" 2>&1 || { cat "$build.install.log"; exit 1; }

# Development install: the generated message module stays where rosidl put it, and
# every source module is a link to this checkout, so edits take effect at once.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for source in "$repo"/parahydra_ros/*; do
  name="$(basename "$source")"
  [ "$name" = __pycache__ ] && continue
  target="$site/parahydra_ros/$name"
  [ "$(readlink "$target" 2>/dev/null)" = "$source" ] && continue
  rm -rf "$target"
  ln -s "$source" "$target"
done
# Links to modules this checkout no longer has (moved or removed) go too.
for target in "$site"/parahydra_ros/*; do
  if [ -L "$target" ] && [ ! -e "$target" ]; then
    case "$(readlink "$target")" in "$repo"/parahydra_ros/*) rm -f "$target" ;; esac
  fi
done

cat > "$venv/env.sh" <<ENV
# Written by scripts/setup.sh: source it to use parahydra_ros from this checkout.
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:\$PATH"
export AMENT_PREFIX_PATH="$venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# DDS discovery stays on this machine unless you choose otherwise
# (multi-machine set-ups: export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET).
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
ENV
say "ready: source $venv/env.sh"
