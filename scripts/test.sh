#!/usr/bin/env bash
# The project's whole test command, from nothing: venvs, pinned dependencies, lint, types, docs, tests.
# Every server the tests need (the DashScope simulator, the GCS emulator, Airflow components) is started by the
# tests themselves on 127.0.0.1 and stopped by them.
#
# 1. .venv (the newest Airflow, constraints.txt): lint, types, docs and the whole suite, which includes the install
#    matrix (tests/packaging/test_release.py: the built wheel into fresh venvs of Airflow 2.11 ... 3.3).
# 2. .venv-2.11 and .venv-3.1 (constraints/airflow-<v>.txt): the representative set below, on that Airflow; the two
#    sets run side by side, each logged to .test-logs/ and printed when both are done.
#    WAN_AIRFLOW_VERSIONS="" skips them; arguments to this script go to the first pytest run only.
# Tests run in parallel processes (pytest-xdist, WAN_TEST_WORKERS each, default 3): most of a test's time is spent
# waiting on servers and Airflow components, not on the CPU (a serial run kept 2 cores about 30% busy). Every test
# starts its servers on free ports and every worker gets its own AIRFLOW_HOME (tests/conftest.py); a test file stays
# in one worker, so its module-scoped servers start once.
set -euo pipefail
cd "$(dirname "$0")/.."

# The representative set for the older Airflow versions (issue 11), in one place: every example DAG end to end,
# hook, trigger, sensor and operator tests against the simulator, the transfer, one real scheduler + triggerer
# deferral run and a worker killed after the create, the compatibility table and the provider config, and the
# hostile-answer and transport-parity tests.
COMPAT_TESTS=(
  tests/dags/test_example_dags.py
  tests/foundation/test_hook.py
  tests/foundation/test_dag_runs.py
  tests/foundation/test_retry_safety.py
  tests/foundation/test_retry_attacks.py
  tests/foundation/test_record_cleanup.py
  tests/deferral/test_trigger.py
  tests/deferral/test_operator_deferral.py
  tests/deferral/test_config_during_wait.py::test_prices_changed_during_the_wait_keep_the_submit_estimate
  tests/deferral/test_sensor.py
  tests/transfer
  tests/deferral/test_stack_e2e.py::test_deferred_run_succeeds_with_result_in_xcom
  tests/deferral/test_worker_crash.py
  tests/compat
  tests/unit
  tests/integration
)
AIRFLOW_VERSIONS=${WAN_AIRFLOW_VERSIONS-2.11 3.1}

WORKERS=${WAN_TEST_WORKERS:-3}

run_pytest() {
  set +e
  python -m pytest -p no:cacheprovider -q -ra -n "$WORKERS" --dist loadfile "$@"
  local status=$?
  set -e
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    status=1
  fi
  return "$status"
}

started=$SECONDS
source scripts/venv.sh

# the distributed test (tests/deferral/test_scale_out.py) starts Redis and PostgreSQL from Debian's packages
if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing redis-server and postgresql (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server postgresql >/dev/null
  else
    echo "== redis-server or postgresql missing (not root): the distributed test is skipped"
  fi
fi

echo "== ruff"
ruff check airflow_provider_wan tests dags scripts benchmarks docs
ruff format --check airflow_provider_wan tests dags scripts benchmarks docs
echo "== mypy"
mypy
if [ -f docs/conf.py ]; then
  echo "== docs (warnings are errors)"
  sphinx-build -q -W --keep-going -b html docs docs/_build/html
fi
echo "== pytest: the whole suite on Airflow $(python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
status=0
run_pytest "$@" || status=$?
echo "== $(( SECONDS - started )) s so far"

# the venvs one after the other (they share uv's cache), then the sets side by side
for version in $AIRFLOW_VERSIONS; do
  deactivate
  WAN_AIRFLOW=$version source scripts/venv.sh
done
deactivate
mkdir -p .test-logs
pids=()
for version in $AIRFLOW_VERSIONS; do
  (
    set +u
    source ".venv-$version/bin/activate"
    set -u
    echo "== pytest: the representative set on Airflow $(python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
    WORKERS=${WAN_TEST_WORKERS_COMPAT:-2} run_pytest "${COMPAT_TESTS[@]}"
  ) >".test-logs/airflow-$version.log" 2>&1 &
  pids+=("$!")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=$?
done
for version in $AIRFLOW_VERSIONS; do
  cat ".test-logs/airflow-$version.log"
done
echo "== $(( SECONDS - started )) s in all"
exit "$status"
