# Sourced by run.sh and test.sh: make .venv and install the pinned requirements once per change.
# Usage: . scripts/venv.sh requirements.txt|requirements-dev.txt
_req="${1:-requirements.txt}"
_python="${PYTHON:-python3.11}"
command -v "$_python" >/dev/null 2>&1 || _python=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($_python --version)"
  "$_python" -m venv .venv
fi
_stamp=".venv/.installed-$(cat requirements.txt "$_req" | sha256sum | cut -c1-16)-$(basename "$_req")"
if [ ! -f "$_stamp" ]; then
  echo "==> installing $_req into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$_req"
  touch "$_stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
