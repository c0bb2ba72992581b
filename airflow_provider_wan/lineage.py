"""
OpenLineage for the provider's operators, with apache-airflow-providers-openlineage installed.

A task records a :class:`LineageRecord` while it runs (plain values: this module imports nothing of OpenLineage);
its ``get_openlineage_facets_on_complete``, which the OpenLineage listener calls after the task succeeded, hands
it to :mod:`airflow_provider_wan._openlineage`, which alone imports the openlineage packages. The listener may run
in a forked process, where asking DashScope or the store again is neither possible nor wanted.

Naming, after OpenLineage's dataset naming conventions (decided in :doc:`/lineage`):

* the DashScope model is the **input** of a transfer and the **output** of a submit operator: namespace
  ``dashscope://<API host>`` (e.g. ``dashscope://dashscope-intl.aliyuncs.com``), name = the model
  (``wan2.6-t2v``). The model, not the task id: a DashScope task lives 24 hours, the model is what a lineage graph
  groups by; the task id is in the run facet;
* the stored video is the **output** of a transfer: ``s3://bucket`` / ``gs://bucket`` + the key, Azure
  ``wasbs://container@account.blob.core.windows.net`` + the blob name, a local file ``file`` + its absolute path;
* a ``wan`` run facet (:class:`WanRunFacet`): task id, model, usage (seconds, resolution), the cost estimate from
  the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LineageRecord", "dashscope_namespace", "storage_dataset"]


@dataclass
class LineageRecord:
    """What a task recorded for OpenLineage while it ran: plain values, read later by the listener."""

    namespace: str
    wan_task_id: str
    model: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    estimated_cost_usd: float | None = None
    #: (namespace, name) of the stored video, for a transfer
    stored: tuple[str, str] | None = None


def dashscope_namespace(base_url: str | None) -> str:
    """``dashscope://<host[:port]>`` of the API base URL in use; ``dashscope`` when unknown."""
    try:
        netloc = urlsplit(base_url or "").netloc.rpartition("@")[2]
    except ValueError:
        netloc = ""
    return f"dashscope://{netloc}" if netloc else "dashscope"


def storage_dataset(uri: str, azure_account: str | None = None) -> tuple[str, str]:
    """(namespace, name) of a stored object's URI, after OpenLineage's naming conventions."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    key = parts.path.lstrip("/")
    if scheme == "file":
        return "file", parts.path
    if scheme in ("abfs", "abfss", "az", "wasb", "wasbs") and azure_account:
        return f"wasbs://{parts.netloc}@{azure_account}.blob.core.windows.net", key
    if scheme in ("gs", "gcs"):
        return f"gs://{parts.netloc}", key
    if scheme in ("s3", "s3a"):
        return f"s3://{parts.netloc}", key
    return f"{scheme}://{parts.netloc}", key
