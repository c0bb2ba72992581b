"""Apache Airflow provider for Alibaba Cloud Model Studio's Wan video generation models (DashScope API)."""

from __future__ import annotations

__version__ = "0.1.0"
