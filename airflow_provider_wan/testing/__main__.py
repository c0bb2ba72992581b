"""``python -m airflow_provider_wan.testing``: the same as the ``wan-simulator`` console script."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
