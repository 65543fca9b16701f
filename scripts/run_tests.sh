#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up if needed, then run
# pytest with DDS confined to this machine in a domain of its own.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
# shellcheck disable=SC1091
source "${PARAHYDRA_VENV:-$repo/.venv}/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}"
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
cd "$repo"
exec python -m pytest "$@"
