"""What every benchmark prints first: the machine and the versions it measured."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("apache-airflow", "airflow-provider-wan", "aiohttp", "requests", "google-cloud-storage", "av")


def describe() -> str:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}\n"
        f"python: {sys.version.split()[0]}\n"
        f"packages: {', '.join(versions)}"
    )
