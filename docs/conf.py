"""Sphinx configuration of the airflow-provider-wan docs: ``sphinx-build -W -b html docs docs/_build/html``."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(DOCS / "_ext"), str(ROOT)]

# autodoc and the generated tables import the provider, which imports Airflow: give Airflow a throw-away home so a
# docs build never writes ~/airflow, and never reads a developer's real configuration
if "AIRFLOW_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="wan-docs-airflow-")
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
    os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_wan import __version__  # noqa: E402

project = "airflow-provider-wan"
author = "airflow-provider-wan contributors"
copyright = "the airflow-provider-wan contributors, Apache License 2.0"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "wan_docs",
]
exclude_patterns = ["_build"]
nitpicky = False
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# the provider's modules import these lazily; the docs build must not need them
autodoc_mock_imports = ["av", "gcp_storage_emulator"]

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "furo"
html_title = f"airflow-provider-wan {__version__}"
html_static_path: list[str] = []
