#!/usr/bin/env bash
# The project's whole test command, from nothing: venv, pinned dependencies, lint, types, docs, tests.
# Every server the tests need (the DashScope simulator, the GCS emulator, Airflow components) is started by the
# tests themselves on 127.0.0.1 and stopped by them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

echo "== ruff"
ruff check airflow_provider_wan tests dags scripts benchmarks docs
ruff format --check airflow_provider_wan tests dags scripts benchmarks docs
echo "== mypy"
mypy
if [ -f docs/conf.py ]; then
  echo "== docs (warnings are errors)"
  sphinx-build -q -W --keep-going -b html docs docs/_build/html
fi
echo "== pytest"
set +e
python -m pytest -p no:cacheprovider -q -ra "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
