"""The S3 sink's botocore floor: an older one would send its PutObject and completion without their conditions."""

from __future__ import annotations

import pytest

from airflow_provider_wan.exceptions import WanFinalError
from airflow_provider_wan.transfers.sinks.s3 import require_botocore


@pytest.mark.parametrize("installed", ["1.35.68", "1.34.162", "1.9.999", "0.99.100"])
def test_an_older_botocore_is_a_final_error_naming_both_versions(installed: str) -> None:
    with pytest.raises(WanFinalError) as caught:
        require_botocore(installed)
    assert str(caught.value).startswith("S3 destinations need boto3/botocore 1.35.69 or later (")
    assert f"installed: {installed}." in str(caught.value)


@pytest.mark.parametrize("installed", ["1.35.69", "1.35.100", "1.36.0", "1.44.8", "1.100.0", "2.0.0", "1.40.0rc1"])
def test_botocore_1_35_69_or_later_passes(installed: str) -> None:
    require_botocore(installed)  # numbers, not text: "1.100.0" is newer than "1.35.69"
