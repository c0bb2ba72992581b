# Sourced by the Makefile's commands: create a venv if needed and install the project with pinned dependencies.
# Re-installs only when pyproject.toml or the constraints file changed since the last install.
#
#   source scripts/venv.sh                      .venv: the newest Airflow (constraints.txt), everything
#   WAN_AIRFLOW=2.11 source scripts/venv.sh     .venv-2.11: Airflow 2.11.x (constraints/airflow-2.11.txt), tests only
#   WAN_AIRFLOW=3.1 source scripts/venv.sh      .venv-3.1: Airflow 3.1.x (constraints/airflow-3.1.txt), tests only
set -euo pipefail
AZURITE_VERSION=3.37.0
PYTHON=${PYTHON:-python3}
if [ -n "${WAN_AIRFLOW:-}" ]; then
  WAN_VENV=.venv-$WAN_AIRFLOW
  WAN_CONSTRAINTS=constraints/airflow-$WAN_AIRFLOW.txt
  WAN_EXTRAS=test
else
  WAN_VENV=.venv
  WAN_CONSTRAINTS=constraints.txt
  WAN_EXTRAS=test,test-stores,docs,scale
fi
if [ ! -f "$WAN_CONSTRAINTS" ]; then
  echo "no constraints file $WAN_CONSTRAINTS for WAN_AIRFLOW=$WAN_AIRFLOW" >&2
  return 1 2>/dev/null || exit 1
fi
if [ ! -x "$WAN_VENV/bin/python" ]; then
  echo "== creating $WAN_VENV"
  "$PYTHON" -m venv "$WAN_VENV"
fi
# shellcheck disable=SC1091
source "$WAN_VENV/bin/activate"
stamp=$WAN_VENV/.installed-$(cat pyproject.toml "$WAN_CONSTRAINTS" | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "== installing dependencies into $WAN_VENV (pinned by $WAN_CONSTRAINTS)"
  python -m pip install -q --upgrade pip uv
  uv pip install -q -c "$WAN_CONSTRAINTS" -e ".[$WAN_EXTRAS]"
  rm -f "$WAN_VENV"/.installed-*
  touch "$stamp"
fi
# the Azure tests' Blob service (Azurite, an npm package) beside the test-stores extra, in the main venv only;
# without node the Azure tests skip
if [ -z "${WAN_AIRFLOW:-}" ] && command -v npm >/dev/null \
  && ! grep -qs "\"version\": \"$AZURITE_VERSION\"" .tools/node_modules/azurite/package.json; then
  echo "== installing azurite into .tools"
  npm install --silent --no-audit --no-fund --prefix .tools "azurite@$AZURITE_VERSION" >/dev/null
fi
