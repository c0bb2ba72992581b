"""
Issue 11, acceptance 3: the compatibility table in ``docs/compatibility.rst`` says the truth for the Airflow this
test runs on. Every row has a probe that looks at the installed Airflow and the provider (not at a version number
alone); the cell of this version's column must agree with it, and ``airflow_provider_wan.compat``'s flags with both.
``make test`` runs it on Airflow 2.11, 3.1 and 3.3.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from airflow_provider_wan import compat

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "compatibility.rst"
PUBLIC_MODULES = (
    "airflow_provider_wan.hooks.wan",
    "airflow_provider_wan.operators.wan",
    "airflow_provider_wan.sensors.wan",
    "airflow_provider_wan.triggers.wan",
    "airflow_provider_wan.transfers.wan_to_gcs",
)


def _table() -> tuple[list[str], dict[str, list[str]]]:
    """(version columns, {feature: cells}) from the first list-table of the page."""
    text = TABLE.read_text()
    body = text[text.index(".. list-table::") :]
    rows: list[list[str]] = []
    for line in body.splitlines()[1:]:
        if line.startswith("   * - "):
            rows.append([line[len("   * - ") :].strip()])
        elif line.startswith("     - ") and rows:
            rows[-1].append(line[len("     - ") :].strip())
        elif line and not line.startswith(" "):
            break
    header, *features = rows
    return header[1:], {row[0]: row[1:] for row in features}


def _column() -> str:
    """This Airflow's column: its major.minor (a newer 3.x is held to the newest column)."""
    columns, _ = _table()
    major, minor = (int(part) for part in version("apache-airflow").split(".")[:2])
    mine = f"{major}.{minor}"
    if mine not in columns and (major, minor) > tuple(int(p) for p in columns[-1].split(".")):
        return columns[-1]
    return mine


# --- probes: what this Airflow really has ---------------------------------------------------------------------------
def _public_modules_import() -> bool:
    for name in PUBLIC_MODULES:
        importlib.import_module(name)
    return True


def _task_state_store() -> bool:
    from airflow.providers.common.compat.sdk import ResumableJobMixin

    # the SDK's mixin, not common.compat's stand-in, and the metadata DB has the store's table
    real = ResumableJobMixin.__module__.startswith("airflow.sdk")
    table = importlib.util.find_spec("airflow.models.task_state_store") is not None
    assert real == table, "ResumableJobMixin and the task state store should come together"
    assert real == compat.HAS_TASK_STATE_STORE
    return real


def _variable_fallback() -> bool:
    # the record falls back to a Variable exactly where a task's context has no task state store
    return not _task_state_store()


def _trigger_on_kill() -> bool:
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_wan.triggers.wan import WanTaskTrigger

    called = "on_kill" in BaseTrigger.__dict__
    assert called == compat.HAS_TRIGGER_ON_KILL
    assert "on_kill" in WanTaskTrigger.__dict__, "the trigger implements on_kill on every version (harmless below)"
    return called


def _airflow_form_fields() -> set[str]:
    """The wan connection's extra fields as Airflow's UI gets them on this version."""
    from airflow.providers_manager import ProvidersManager

    fields = {key for key in ProvidersManager().connection_form_widgets if key.startswith("extra__wan__")}
    if fields or not compat.AIRFLOW_V_3_0_PLUS or compat.HAS_DECLARATIVE_CONN_FIELDS:
        return fields
    # Airflow 3.0/3.1 without the FAB provider: the API server imports the hooks with wtforms/FAB stand-ins, in a
    # fresh ProvidersManager (this process's one may have been built without them)
    code = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "hooks = {h.connection_type: sorted(h.extra_fields or {}) for h in HookMetaService.hook_meta_data()}\n"
        "print(json.dumps(hooks.get('wan', [])))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return {f"extra__wan__{name}" for name in json.loads(done.stdout.strip().splitlines()[-1])}


def _declared_fields() -> set[str]:
    from airflow_provider_wan.get_provider_info import get_provider_info

    (wan,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "wan"]
    return {f"extra__wan__{name}" for name in wan["conn-fields"]}


def _declarative_form() -> bool:
    from airflow_provider_wan.hooks.wan import WanHook

    from_info = "get_connection_form_widgets" not in WanHook.__dict__
    assert from_info == compat.HAS_DECLARATIVE_CONN_FIELDS
    if from_info:
        assert _airflow_form_fields() == _declared_fields()
    return from_info


def _hook_form() -> bool:
    from airflow_provider_wan.hooks.wan import WanHook

    on_hook = "get_connection_form_widgets" in WanHook.__dict__
    if on_hook:
        assert _airflow_form_fields() == _declared_fields()
        assert WanHook.get_ui_field_behaviour()["relabeling"] == {"password": "API key"}
    return on_hook


def _config_section() -> bool:
    from airflow.providers_manager import ProvidersManager

    configs = dict(ProvidersManager().provider_configs)
    return "task_query_qps" in configs.get("airflow-provider-wan", {}).get("wan", {}).get("options", {})


PROBES: dict[str, Callable[[], bool]] = {
    "Operators, sensor, trigger, transfer, hook": _public_modules_import,
    "Never pays twice: retry-safety record in the task state store": _task_state_store,
    "Never pays twice: retry-safety record in an Airflow Variable": _variable_fallback,
    "``BaseTrigger.on_kill``": _trigger_on_kill,
    "Connection form declared in the provider info": _declarative_form,
    "Connection form from the hook": _hook_form,
    "``[wan]`` section in ``airflow config``": _config_section,
}


def _probe_for(feature: str) -> Callable[[], bool]:
    (probe,) = [probe for prefix, probe in PROBES.items() if feature.startswith(prefix)] or [None]
    assert probe is not None, f"the compatibility table's row {feature!r} has no probe in this test"
    return probe


def test_table_has_a_column_per_supported_version() -> None:
    columns, features = _table()
    assert columns == ["2.11", "3.0", "3.1", "3.2", "3.3"]
    assert all(len(cells) == len(columns) for cells in features.values())
    assert all(re.match(r"(yes|no)\b", cell) for cells in features.values() for cell in cells)
    assert len(features) == len(PROBES)


@pytest.mark.parametrize("feature", sorted(_table()[1]))
def test_row_is_true_on_this_airflow(feature: str) -> None:
    columns, features = _table()
    cell = features[feature][columns.index(_column())]
    expected = cell.startswith("yes")
    assert _probe_for(feature)() is expected, (
        f"docs/compatibility.rst says {cell!r} for {feature!r} on Airflow {_column()}, "
        f"but Airflow {version('apache-airflow')} here says otherwise"
    )
