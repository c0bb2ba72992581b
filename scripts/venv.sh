# Sourced by the Makefile's commands: create .venv if needed and install the project with pinned dependencies.
# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "== installing dependencies (pinned by constraints.txt)"
  python -m pip install -q --upgrade pip uv
  uv pip install -q -c constraints.txt -e ".[test,docs]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
