"""
Benchmark 4: import cost of each public module, on top of Airflow's ``BaseOperator``.

DAG files are parsed often; importing an operator must stay cheap, on every Airflow version the provider supports.
Each measurement runs in a fresh interpreter: import ``BaseOperator`` through ``airflow.providers.common.compat.sdk``
first (every DAG file pays that anyway; on Airflow 3 it is ``airflow.sdk``'s, on 2.11 ``airflow.models``'), then
time the module's import and list the heavy modules it pulled in. Median of ``--runs`` runs. Run it with the venv of
the Airflow to measure (``.venv``, ``.venv-2.11``, ``.venv-3.1``).

    python benchmarks/import_cost.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import describe

MODULES = (
    "airflow_provider_wan.models",
    "airflow_provider_wan.exceptions",
    "airflow_provider_wan.hooks.wan",
    "airflow_provider_wan.operators.wan",
    "airflow_provider_wan.sensors.wan",
    "airflow_provider_wan.triggers.wan",
    "airflow_provider_wan.transfers.wan_to_gcs",
)
HEAVY = ("google.cloud", "google.auth", "aiohttp", "av", "requests", "grpc", "numpy")
# the goal: none of these for the modules a DAG file imports
MUST_NOT_IMPORT = ("google.cloud", "aiohttp", "av")

PROBE = """
import json, sys, time
from airflow.providers.common.compat.sdk import BaseOperator
before = set(sys.modules)
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
added = set(sys.modules) - before
heavy = sorted({{h for h in {heavy!r} for m in added if m == h or m.startswith(h + ".")}})
print(json.dumps({{"ms": elapsed * 1000, "heavy": heavy, "modules": len(added)}}))
"""


def measure(module: str, runs: int) -> dict[str, object]:
    samples = []
    heavy: list[str] = []
    added = 0
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        samples.append(result["ms"])
        heavy, added = result["heavy"], result["modules"]
    return {"module": module, "ms": statistics.median(samples), "heavy": heavy, "modules": added}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per module (default 7)")
    args = parser.parse_args()
    from importlib.metadata import version

    print(describe())
    print(f"Apache Airflow {version('apache-airflow')}")
    print(f"\n| module | ms on top of BaseOperator (median of {args.runs}) | modules added | heavy modules pulled in |")
    print("|---|---|---|---|")
    failed = False
    for module in MODULES:
        row = measure(module, args.runs)
        bad = [h for h in row["heavy"] if h in MUST_NOT_IMPORT]  # type: ignore[attr-defined]
        failed |= bool(bad) and not module.endswith("wan_to_gcs")
        heavy = ", ".join(row["heavy"]) or "none"  # type: ignore[arg-type]
        print(f"| {module} | {row['ms']:.1f} | {row['modules']} | {heavy} |")
    print(
        "\ngoal: no google.cloud, aiohttp or av for the operator, sensor, trigger and transfer modules:",
        "MISSED" if failed else "met",
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
