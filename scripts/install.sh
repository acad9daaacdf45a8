#!/usr/bin/env bash
# Install what the app needs: system packages (ffmpeg for webm/m4a uploads; with --dev also
# Chromium, espeak-ng and sox for the tests), Python packages, and the front-end libraries.
#   scripts/install.sh          # to run the app
#   scripts/install.sh --dev    # to run the tests too
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

apt_packages="ffmpeg"
[ "$dev" = 1 ] && apt_packages="$apt_packages chromium espeak-ng sox redis-server nginx"
missing=""
for pkg in $apt_packages; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo="sudo"
  if command -v apt-get >/dev/null && { [ -n "$sudo" ] || [ "$(id -u)" = 0 ]; }; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "warning: please install:$missing (uploads of webm/m4a need ffmpeg)" >&2
  fi
fi

if [ "$dev" = 1 ]; then
  python3 -m pip install -q -r requirements-dev.txt
else
  python3 -m pip install -q -r requirements.txt
fi
# the pretrained speaker encoder's weights, for training (see requirements-nodeps.txt)
python3 -m pip install -q --no-deps -r requirements-nodeps.txt
# socket.io-client and Chart.js, served by the app from node_modules/ (never from a CDN)
npm ci --no-audit --no-fund --loglevel=error
