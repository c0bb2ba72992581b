"""
The OpenLineage side of :mod:`airflow_provider_wan.lineage`: the ``wan`` run facet and the task's
``OperatorLineage``. Imported only from ``get_openlineage_facets_on_complete``, i.e. only when
apache-airflow-providers-openlineage is installed and asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from openlineage.client.facet_v2 import RunFacet

from airflow_provider_wan import __version__

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_wan.lineage import LineageRecord

__all__ = ["WanRunFacet", "operator_lineage"]

PRODUCER = f"https://pypi.org/project/airflow-provider-wan/{__version__}/"


@attrs.define
class WanRunFacet(RunFacet):
    """
    What one generation was: the ``wan`` run facet.

    :param wanTaskId: the DashScope task id
    :param model: the model, e.g. ``wan2.6-t2v`` (None when the task does not say: a sensor)
    :param usage: DashScope's usage as reported, e.g. ``{"video_count": 1, "video_duration": 5, ...}``
    :param videoDurationSeconds: generated seconds, from the usage
    :param resolution: ``W*H`` or ``720P`` as the usage says
    :param estimatedCostUsd: list price in USD from the model catalogue; None without a price
    """

    wanTaskId: str  # OpenLineage facet fields are camelCase
    model: str | None = None
    usage: dict[str, Any] = attrs.field(factory=dict)
    videoDurationSeconds: float | None = None
    resolution: str | None = None
    estimatedCostUsd: float | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{PRODUCER}#WanRunFacet"


def _run_facet(record: LineageRecord) -> WanRunFacet:
    usage = record.usage
    duration = next(
        (
            usage[key]
            for key in ("output_video_duration", "video_duration", "duration")
            if isinstance(usage.get(key), int | float) and not isinstance(usage.get(key), bool)
        ),
        None,
    )
    sr = usage.get("SR")
    resolution = usage.get("size") or usage.get("video_ratio") or (f"{sr}P" if isinstance(sr, int) else None)
    return WanRunFacet(
        wanTaskId=record.wan_task_id,
        model=record.model,
        usage=dict(usage),
        videoDurationSeconds=duration,
        resolution=str(resolution) if resolution else None,
        estimatedCostUsd=record.estimated_cost_usd,
        producer=PRODUCER,
    )


def operator_lineage(record: LineageRecord | None, *, model_is_input: bool) -> OperatorLineage:
    """
    The lineage of a finished task: the model dataset as input (a transfer) or output (a submit operator), the
    stored video as output (a transfer), and the ``wan`` run facet. Empty when the task recorded nothing.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    if record is None:
        return OperatorLineage()
    model = [Dataset(namespace=record.namespace, name=record.model)] if record.model else []
    stored = [Dataset(namespace=record.stored[0], name=record.stored[1])] if record.stored else []
    return OperatorLineage(
        inputs=model if model_is_input else [],
        outputs=stored if model_is_input else model,
        run_facets={"wan": _run_facet(record)},
    )
