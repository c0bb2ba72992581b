"""
The few real differences between the Airflow versions this provider runs on (2.11.x and every 3.x).

Every Airflow name the provider uses comes from ``airflow.providers.common.compat.sdk`` (and triggers from
``airflow.triggers.base``), which picks the right module on each version. What is left here are the features that
exist only from some version on, as flags the code and the docs' compatibility table (``docs/compatibility.rst``,
kept true by ``tests/compat/test_compatibility_table.py``) read, plus the connection form for Airflow < 3.2.

Decided, and why:

* Retry policies (AIP-105, 3.3) are not used. A final DashScope error raises ``AirflowFailException`` (no retry, on
  every version) and throttling is waited out inside the try by the hook's own retry loop, honouring
  ``Retry-After``; a retry policy would only re-express that, on 3.3 alone.
* The async connection lookup needs no branch here: ``airflow.providers.common.compat.connection`` has it.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
)

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "HAS_DECLARATIVE_CONN_FIELDS",
    "HAS_TASK_STATE_STORE",
    "HAS_TRIGGER_ON_KILL",
    "asset_for_uri",
    "connection_form_widgets",
    "ui_field_behaviour",
]

#: Airflow 3.3: the task state store (AIP-103) and the real ``ResumableJobMixin``. Below, common.compat hands out a
#: stand-in that submits on every try, and the operators keep their retry-safety record elsewhere.
HAS_TASK_STATE_STORE: bool = AIRFLOW_V_3_3_PLUS
#: Airflow 3.3: the triggerer calls ``BaseTrigger.on_kill`` when a user marks, clears or kills a deferred task.
#: Below, a deferred task killed by a user leaves its DashScope task alone (it still finishes and is paid for).
HAS_TRIGGER_ON_KILL: bool = AIRFLOW_V_3_3_PLUS
#: Airflow 3.2: the connection form is read from the provider info (``conn-fields``, ``ui-field-behaviour``)
#: without importing the hook. Below, Airflow asks the hook (:meth:`WanHook.get_connection_form_widgets`).
HAS_DECLARATIVE_CONN_FIELDS: bool = AIRFLOW_V_3_2_PLUS


def _wan_connection_type() -> dict[str, Any]:
    from airflow_provider_wan.get_provider_info import get_provider_info

    (conn_type,) = (c for c in get_provider_info()["connection-types"] if c["connection-type"] == "wan")
    return dict(conn_type)


def connection_form_widgets() -> dict[str, Any]:
    """
    The ``wan`` connection form's extra fields as wtforms widgets, for Airflow < 3.2 (2.11's webserver, and 3.0/3.1
    with the FAB provider installed). Built from the provider info's ``conn-fields``: one definition for all.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import StringField
    from wtforms.validators import Optional

    return {
        name: StringField(
            lazy_gettext(field["label"]),
            widget=BS3TextFieldWidget(),
            description=field.get("description", ""),
            validators=[Optional()],
            default=field.get("schema", {}).get("default"),
        )
        for name, field in _wan_connection_type()["conn-fields"].items()
    }


def ui_field_behaviour() -> dict[str, Any]:
    """The provider info's ``ui-field-behaviour`` in the spelling Airflow < 3.2 expects from a hook."""
    behaviour = _wan_connection_type()["ui-field-behaviour"]
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def asset_for_uri(uri: str) -> Any:
    """An ``Asset`` named by its URI; on Airflow 2.11 the ``Dataset`` it was called then, which has no name."""
    from airflow.providers.common.compat.sdk import Asset

    return Asset(name=uri, uri=uri) if AIRFLOW_V_3_0_PLUS else Asset(uri=uri)
