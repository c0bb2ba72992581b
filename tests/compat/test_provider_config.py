"""
Issue 11, acceptance 4: the provider's ``[wan]`` config section is registered in its provider info, so Airflow's own
CLI knows it (``airflow config get-value wan task_query_qps`` prints the default, ``airflow config list`` shows it),
and every option the code reads with ``conf.get*("wan", ...)`` is registered with a description and a default.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_wan.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
_READ = re.compile(r"conf\.get\w*\(\s*[\"']wan[\"']\s*,\s*[\"'](\w+)[\"']")


def _options() -> dict[str, dict[str, str]]:
    return dict(get_provider_info()["config"]["wan"]["options"])


def _airflow(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__WAN__")}, **(env or {})},
    )
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_option_the_code_reads_is_registered() -> None:
    read = {name for path in (ROOT / "airflow_provider_wan").rglob("*.py") for name in _READ.findall(path.read_text())}
    assert "task_query_qps" in read, "the pattern no longer finds the options the code reads"
    options = _options()
    assert read <= set(options), f"read with conf.get*('wan', ...) but not registered: {sorted(read - set(options))}"
    for name, option in options.items():
        assert option["description"].strip(), name
        assert "default" in option, name  # None: optional, no default
        assert option["type"] in {"string", "integer", "float", "boolean"}, name


def test_task_query_qps_default_is_the_hooks() -> None:
    from airflow_provider_wan.hooks.wan import DEFAULT_TASK_QUERY_QPS

    assert float(_options()["task_query_qps"]["default"]) == DEFAULT_TASK_QUERY_QPS


def test_cli_get_value_prints_the_default() -> None:
    out = _airflow("config", "get-value", "wan", "task_query_qps")
    assert out.strip().splitlines()[-1] == _options()["task_query_qps"]["default"]


def test_cli_get_value_reads_the_environment() -> None:
    out = _airflow("config", "get-value", "wan", "task_query_qps", env={"AIRFLOW__WAN__TASK_QUERY_QPS": "4.5"})
    assert out.strip().splitlines()[-1] == "4.5"


@pytest.mark.parametrize("option", sorted(_options()))
def test_cli_config_list_shows_the_section(option: str) -> None:
    out = _airflow("config", "list", "--section", "wan")
    assert "[wan]" in out
    assert re.search(rf"^#?\s*{option}\s*=", out, re.M), out
