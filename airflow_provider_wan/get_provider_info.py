"""Provider metadata read by Airflow's provider manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_wan import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        # must equal the distribution name in pyproject.toml, or provider discovery raises ValueError
        "package-name": "airflow-provider-wan",
        "name": "Alibaba Cloud Wan (DashScope)",
        "description": "Generate videos with Alibaba Cloud Model Studio's Wan models (DashScope API) and land them "
        "in Google Cloud Storage.",
        # newest first, as in every provider; tests/compat/test_packaging_release.py keeps it in step with
        # __version__ and CHANGELOG.md
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Alibaba Cloud Wan (DashScope)",
                "external-doc-url": "https://www.alibabacloud.com/help/en/model-studio/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Alibaba Cloud Wan (DashScope)", "python-modules": ["airflow_provider_wan.hooks.wan"]}
        ],
        "operators": [
            {
                "integration-name": "Alibaba Cloud Wan (DashScope)",
                "python-modules": ["airflow_provider_wan.operators.wan"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Alibaba Cloud Wan (DashScope)",
                "python-modules": ["airflow_provider_wan.sensors.wan"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Alibaba Cloud Wan (DashScope)",
                "python-modules": ["airflow_provider_wan.triggers.wan"],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "Alibaba Cloud Wan (DashScope)",
                "target-integration-name": "Google Cloud Storage (GCS)",
                "python-module": "airflow_provider_wan.transfers.wan_to_gcs",
            }
        ],
        # the transfers' "Stored video" button; listed so that serialized DAGs can name it (Airflow 2.11's webserver)
        "extra-links": ["airflow_provider_wan.transfers.links.WanStoredObjectLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_wan.hooks.wan.WanHook",
                "connection-type": "wan",
                "hook-name": "Alibaba Cloud Wan (DashScope)",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "port", "extra"],
                    "relabeling": {"password": "API key"},
                    "placeholders": {"password": "sk-..."},
                },
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "DashScope region the API key belongs to: singapore, beijing, virginia, "
                        "hongkong or frankfurt. Keys are bound to their region.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["singapore", "beijing", "virginia", "hongkong", "frankfurt", None],
                            "default": "singapore",
                        },
                    },
                    "workspace_id": {
                        "label": "Workspace ID",
                        "description": "Optional Model Studio workspace id: selects the workspace domain "
                        "https://{workspace_id}.{region}.maas.aliyuncs.com (required for frankfurt).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "base_url": {
                        "label": "Base URL",
                        "description": "Optional override of the region's endpoint, e.g. a proxy or the simulator "
                        "(http://127.0.0.1:8089/api/v1). Wins over Region.",
                        "schema": {"type": ["string", "null"], "format": "uri"},
                    },
                },
            }
        ],
        # the [wan] section of airflow.cfg: `airflow config list` / `get-value wan ...` show it with its defaults.
        # Every option the code reads with conf.get*("wan", ...) is here (tests/compat/test_provider_config.py).
        "config": {
            "wan": {
                "description": "Alibaba Cloud Wan (DashScope) provider.",
                "options": {
                    "task_query_qps": {
                        "description": "Ceiling of the task status reads (GET /tasks/{id}) per second that one "
                        "process (a triggerer or a worker) sends to DashScope; 0 switches pacing off. Below it, each "
                        "process adapts its pace to DashScope's answers (slower on 429, faster while reads wait), so "
                        "several processes share the account's 20 per second without setting this. Lower it to "
                        "leave room for other clients of the same account, or set it per process to whole shares of "
                        "20 (10/10, 7/7/6, 5/5/5/5) where the number of processes that read is known. A value that "
                        "is not a number is logged as a warning and the default is used.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "5",
                        "default": "20",
                    },
                    "freeze_heap_in_triggerer": {
                        "description": "Freeze the process's heap (gc.freeze()) once, when the first WanTaskTrigger "
                        "of a triggerer process starts, so the interpreter's full garbage collections skip what "
                        "exists then: without it, a batch of triggers starting together sets off a full collection "
                        "of the triggerer's whole heap, which stopped its event loop (every trigger of the process) "
                        "for about 150 ms (22 ms with it). Cost: 0.2 ms, once per process; objects that existed then "
                        "and later become garbage in a reference cycle are never freed (none in the provider's "
                        "benchmark, after 2,000 triggers). Also applies where triggers run inline (dag.test()).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "prices": {
                        "description": "Prices that replace the model catalogue's, as JSON: model -> {tier: USD per "
                        "generated second}. Read when a task is about to be created, for its cost estimate and "
                        "max_cost_usd; that estimate is recorded with the task and reported in its result, so a "
                        "change affects later creates only. A wan connection's extra 'prices' (same shape) wins "
                        "over this.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"wan3.0-video": {"720P": 0.06, "1080P": 0.12}}',
                        "default": None,
                    },
                },
            },
        },
    }
