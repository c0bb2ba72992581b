"""
Issue 11: the package as it would be released, and acceptance 1.

* ``python -m build`` makes an sdist and a wheel that ``twine check`` accepts, both carrying the Apache-2.0 LICENSE;
  ``__version__``, the provider info's ``versions`` and CHANGELOG.md agree.
* The wheel goes into fresh venvs that hold only Apache Airflow 2.11, 3.0, 3.1, 3.2 or 3.3 (installed first, pinned by
  ``constraints/airflow-<v>.txt`` or ``constraints.txt``): ``pip install`` leaves Airflow's version untouched and
  ``airflow providers list`` shows the provider; on 2.11, 3.1 and 3.3 a ``wan`` connection is also added from the CLI
  without a warning of ours (3.0 and 3.2 are install-only checks, to keep CI short).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_wan import __version__
from airflow_provider_wan.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
#: Airflow release tested per minor, and whether the connection is also added from the CLI there
AIRFLOW_RELEASES = {"2.11": True, "3.0": False, "3.1": True, "3.2": False, "3.3": True}
#: what marks a line of Airflow's output as ours
OURS = ("airflow_provider_wan", "airflow-provider-wan", "WanHook", "wan_default")


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _constraints(minor: str) -> Path:
    path = ROOT / "constraints" / f"airflow-{minor}.txt"
    return path if path.exists() else ROOT / "constraints.txt"


def _pinned_airflow(minor: str) -> str:
    match = re.search(r"^apache-airflow==(\S+)$", _constraints(minor).read_text(), re.M)
    assert match, f"{_constraints(minor)} pins no apache-airflow"
    assert match.group(1).startswith(f"{minor}."), f"{_constraints(minor)} pins Airflow {match.group(1)}"
    return match.group(1)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(ROOT)])
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_versions_in_step() -> None:
    versions = get_provider_info()["versions"]
    assert versions[0] == __version__
    assert len(set(versions)) == len(versions)
    changelog = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert changelog[0] == __version__, "CHANGELOG.md's newest entry is not __version__"
    assert versions == changelog, "the provider info's versions and CHANGELOG.md's entries differ"


def test_build_and_twine_check(dist: dict[str, Path]) -> None:
    assert dist["wheel"].name == f"airflow_provider_wan-{__version__}-py3-none-any.whl"
    assert dist["sdist"].name == f"airflow_provider_wan-{__version__}.tar.gz"
    out = _run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])]).stdout
    assert out.count("PASSED") == 2, out


def test_license_ships_in_both(dist: dict[str, Path]) -> None:
    import tarfile
    import zipfile

    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith("dist-info/licenses/LICENSE")]
        assert wheel.read(name).decode() == license_text
        metadata = wheel.read(f"airflow_provider_wan-{__version__}.dist-info/METADATA").decode()
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert "Requires-Dist: apache-airflow>=2.11.0" in required
    assert not [line for line in required if "providers-http" in line or "google" in line], required
    assert re.search(r"^Requires-Dist: google-cloud-storage.*extra == \"google\"", metadata, re.M)
    with tarfile.open(dist["sdist"]) as sdist:
        member = sdist.extractfile(f"airflow_provider_wan-{__version__}/LICENSE")
        assert member is not None
        assert member.read().decode() == license_text


@pytest.mark.parametrize("minor", sorted(AIRFLOW_RELEASES, key=lambda v: tuple(map(int, v.split(".")))))
def test_wheel_installs_into_airflow(minor: str, dist: dict[str, Path], tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH"))}
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    _run([uv, "venv", "-q", "--seed", "--python", sys.executable, str(venv)], clean)
    # Airflow first, alone, as a user's environment has it
    pinned = _pinned_airflow(minor)
    _run([uv, "pip", "install", "-q", "--python", python, "-c", str(_constraints(minor)), f"apache-airflow=={pinned}"])
    version = [python, "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"]
    assert _run(version, clean).stdout.strip() == pinned

    # then the wheel, with the ordinary client
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(dist["wheel"])], clean)
    assert _run(version, clean).stdout.strip() == pinned, "installing the provider changed Airflow's version"

    home = tmp_path / "home"
    env = clean | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
    }
    airflow = str(venv / "bin" / "airflow")
    listed = _run([airflow, "providers", "list"], env)
    assert re.search(rf"^airflow-provider-wan\s*\|.*\|\s*{re.escape(__version__)}\s*$", listed.stdout, re.M), (
        listed.stdout
    )
    if not AIRFLOW_RELEASES[minor]:
        return
    _run([airflow, "db", "migrate"], env)
    added = _run(
        [
            airflow,
            "connections",
            "add",
            "wan_default",
            "--conn-type",
            "wan",
            "--conn-password",
            "sk-install-matrix-test-key",
            "--conn-extra",
            '{"region": "singapore"}',
        ],
        env,
    )
    assert "Successfully added" in added.stdout
    ours = [
        line
        for line in (added.stdout + added.stderr + listed.stdout + listed.stderr).splitlines()
        if "warn" in line.lower() and any(mark in line for mark in OURS)
    ]
    assert ours == []
