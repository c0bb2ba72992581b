"""
The docs build with warnings as errors, and the how-to pages show code taken from the example DAG files.

The Sphinx build catches drift: a literalinclude marker that moved, a ref label an operator's docstring points to,
a DashScope code added to ``exceptions._CODE_CLASSES`` without a documented HTTP status (``docs/_ext/wan_docs.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DAGS = ROOT / "dags"
#: how-to page -> example DAG files it must include code from
HOWTO_PAGES = {
    "operators/text_to_video.rst": {"example_wan_text_to_video.py", "example_wan_multishot.py"},
    "operators/image_to_video.rst": {"example_wan_image_to_video.py"},
    "operators/keyframe_to_video.rst": {"example_wan_keyframe_to_video.py"},
    "operators/wan_to_gcs.rst": {"example_wan_text_to_video.py"},
    "operators/sensor.rst": {"example_wan_sensor.py"},
    "operators/batch.rst": {"example_wan_batch.py"},
    "operators/reference_to_video.rst": {"example_wan_reference_to_video.py"},
    "operators/video_edit.rst": {"example_wan_video_edit.py"},
    "operators/video.rst": {"example_wan_v3.py"},
}
_INCLUDE = re.compile(r"\.\. literalinclude:: (?:\.\./)+dags/(\S+)\n((?:\s+:[\w-]+:.*\n)*)")


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    # the dummy builder reads, includes, generates and resolves every page (the drift checks) without writing HTML
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "dummy", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-4000:]}"


@pytest.mark.parametrize(("page", "dag_files"), sorted(HOWTO_PAGES.items()))
def test_howto_pages_include_the_example_dags(page: str, dag_files: set[str]) -> None:
    included = {match.group(1) for match in _INCLUDE.finditer((DOCS / page).read_text())}
    assert dag_files <= included, f"{page} should include code from {sorted(dag_files - included)}"


def test_every_operator_docstring_label_exists() -> None:
    labels = {
        label for path in DOCS.rglob("*.rst") for label in re.findall(r"^\.\. _([^:]+:[^:]+):$", path.read_text(), re.M)
    }
    wanted = set()
    for module in ("operators/wan.py", "transfers/wan_to_gcs.py", "sensors/wan.py"):
        source = (ROOT / "airflow_provider_wan" / module).read_text()
        wanted |= set(re.findall(r":ref:`(howto/[^`]+)`", source))
    assert {
        "howto/operator:WanTextToVideoOperator",
        "howto/operator:WanImageToVideoOperator",
        "howto/operator:WanKeyframeToVideoOperator",
    } <= wanted
    assert wanted <= labels, f"labels missing from docs/: {sorted(wanted - labels)}"


def test_example_markers_are_paired_and_used() -> None:
    docs_text = "\n".join(path.read_text() for path in DOCS.rglob("*.rst"))
    for dag_file in sorted(DAGS.glob("example_wan_*.py")):
        source = dag_file.read_text()
        starts = re.findall(r"# \[START (\w+)\]", source)
        ends = re.findall(r"# \[END (\w+)\]", source)
        assert starts, f"{dag_file.name} has no [START ...] section for the docs"
        assert sorted(starts) == sorted(ends), f"{dag_file.name}: unpaired markers"
        for name in starts:
            assert f"[START {name}]" in docs_text, f"{dag_file.name}'s section {name} is shown on no page"
