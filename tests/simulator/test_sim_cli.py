"""The ``wan-simulator`` command, the child-process runner, the in-process runner and the pytest plugin."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from airflow_provider_wan.testing import SimulatorConfig, WanSimulator, start_simulator_process
from airflow_provider_wan.testing.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
VIDEO = "services/aigc/video-generation/video-synthesis"


def run_module(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_wan.testing", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_help_documents_every_option() -> None:
    result = run_module("--help")
    assert result.returncode == 0
    text = result.stdout
    parser = build_parser()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings
    # every setting has its flag (api_keys is --api-key, log_requests is --quiet)
    renamed = {"api_keys": "--api-key", "log_requests": "--quiet"}
    for field in dataclasses.fields(SimulatorConfig):
        assert renamed.get(field.name, "--" + field.name.replace("_", "-")) in text
    for flag in ("--host", "--port", "--fault", "--generation-seconds", "--time-scale", "--payload-bytes"):
        assert flag in text
    assert "/_sim" in text
    assert "NO authentication" in text


def test_pyproject_declares_the_console_script_and_plugin() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; the project supports 3.10)
    assert 'wan-simulator = "airflow_provider_wan.testing.cli:main"' in pyproject
    assert 'wan_simulator = "airflow_provider_wan.testing.pytest_plugin"' in pyproject
    from airflow_provider_wan.testing import cli, pytest_plugin

    assert callable(cli.main)
    assert pytest_plugin.__name__ == "airflow_provider_wan.testing.pytest_plugin"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--fault", '{"kind": "nope"}'], "kind must be one of"),
        (["--fault", "not json"], "Expecting value"),
        (["--time-scale", "0"], "time_scale must be positive"),
        (["--task-query-qps", "-1"], "task_query_qps cannot be negative"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_child_process_serves_logs_and_stops_cleanly() -> None:
    fault = {"kind": "error", "route": "create", "status": 503}
    with start_simulator_process(
        api_keys=["sk-cli-1", "sk-cli-2"], faults=[fault], generation_seconds=0.2, pending_seconds=0
    ) as sim:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/api/v1"
        headers = {"Authorization": "Bearer sk-cli-2", "X-DashScope-Async": "enable"}
        body = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a cat"}, "parameters": {"size": "832*480"}}
        assert requests.post(f"{sim.base_url}/{VIDEO}", json=body, headers=headers, timeout=10).status_code == 503
        created = requests.post(f"{sim.base_url}/{VIDEO}", json=body, headers=headers, timeout=10)
        task_id = created.json()["output"]["task_id"]
        time.sleep(0.3)
        output = requests.get(f"{sim.base_url}/tasks/{task_id}", headers=headers, timeout=10).json()["output"]
        assert output["task_status"] == "SUCCEEDED"
        assert requests.get(output["video_url"], timeout=30).status_code == 200
        assert sim.stats()["tasks_created"] == 1
        process = sim.process
    assert process.returncode == 0  # SIGTERM is a clean stop
    log = "\n".join(sim.output)
    assert log.startswith("wan-simulator listening on http://127.0.0.1:")
    assert f"POST /api/v1/{VIDEO} 503" in log
    assert f"GET /api/v1/tasks/{task_id} 200" in log
    assert f"GET /_files/{task_id}.mp4 200" in log
    assert log.rstrip().endswith("wan-simulator stopped")
    # never a key, an Authorization header or a link signature
    for secret in ("sk-cli-2", "Bearer", "Signature", "Expires=", "OSSAccessKeyId"):
        assert secret not in log


def test_sigint_stops_cleanly() -> None:
    sim = start_simulator_process(log_requests=False)
    sim.process.send_signal(signal.SIGINT)
    assert sim.process.wait(10) == 0
    sim.stop()


@pytest.mark.skipif(shutil.which("wan-simulator") is None, reason="package not installed (no console script)")
def test_installed_console_script() -> None:
    process = subprocess.Popen(
        ["wan-simulator", "--port", "0", "--api-key", "k", "--quiet"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("wan-simulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert requests.get(f"{url}/tasks/x", headers={"Authorization": "Bearer k"}, timeout=10).ok
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_in_process_simulator_lifecycle() -> None:
    sim = WanSimulator(api_keys=["sk-a"], port=0, log_requests=False)
    with sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.admin_url == sim.base_url.replace("/api/v1", "/_sim")
        assert requests.get(f"{sim.admin_url}/health", timeout=5).json() == {"ok": True}
        port = sim.port
        with pytest.raises(RuntimeError, match="already running"):
            sim.start()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/_sim/health", timeout=2)
    sim.stop()  # idempotent
    # only this simulator's thread: the session's shared simulator may legitimately still be running
    own = f"wan-simulator-{id(sim):x}"
    assert not [t for t in threading.enumerate() if t.name == own and t.is_alive()]


def test_in_process_simulator_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown simulator option"):
        WanSimulator(generation_secs=1)
    with pytest.raises(ValueError, match="kind"):
        WanSimulator(faults=[{"kind": "nope"}])


def test_pytest_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import sys
            import threading

            import requests

            def test_loading_the_plugin_starts_nothing():
                assert not [t for t in threading.enumerate() if t.name.startswith("wan-simulator")]
                # nor imports the server (aiohttp) until a test asks for the fixture
                assert "airflow_provider_wan.testing.simulator" not in sys.modules

            def test_fixture_serves(wan_simulator, wan_simulator_api_key):
                headers = {"Authorization": f"Bearer {wan_simulator_api_key}", "X-DashScope-Async": "enable"}
                body = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a cat"}}
                url = wan_simulator.base_url + "/services/aigc/video-generation/video-synthesis"
                assert requests.post(url, json=body, headers=headers).status_code == 200
                wan_simulator.inject_fault("error")
                wan_simulator.configure(generation_seconds=42)
                assert len(wan_simulator.tasks()) == 1

            def test_state_is_reset_between_tests(wan_simulator):
                assert wan_simulator.tasks() == []
                assert wan_simulator.faults() == []
                assert wan_simulator.config()["generation_seconds"] == 0.5
            """
        )
    )
    installed = any(
        ep.name == "wan_simulator" for ep in importlib.metadata.entry_points(group="pytest11")
    )  # an installed package registers the plugin itself
    plugin_args = [] if installed else ["-p", "airflow_provider_wan.testing.pytest_plugin"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args, "test_inner.py"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_start_simulator_process_reports_a_failed_start() -> None:
    with start_simulator_process(log_requests=False) as first:
        busy_port = first.port
        with pytest.raises(RuntimeError, match="did not start"):
            start_simulator_process(port=busy_port, log_requests=False)


def test_options_to_argv_round_trip() -> None:
    from airflow_provider_wan.testing.simulator import options_to_argv

    argv = options_to_argv(
        {"api_keys": ["a", "b"], "time_scale": 0.5, "faults": [{"kind": "slow", "delay": 1}], "log_requests": False}
    )
    assert argv == [
        "--api-key",
        "a",
        "--api-key",
        "b",
        "--time-scale",
        "0.5",
        "--fault",
        json.dumps({"kind": "slow", "delay": 1}),
        "--quiet",
    ]
    args = build_parser().parse_args(argv)
    assert args.api_keys == ["a", "b"]
    assert args.time_scale == 0.5
    assert args.quiet
