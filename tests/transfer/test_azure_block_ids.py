"""
The Azure sink's block ids, against Azurite (real HTTP): the pre-download check stages a 1-byte block on the very
blob the copy will write, and Azure wants every block of one blob, committed or not, to have an id of one length. So
the check's block and an upload's blocks take their ids from one rule (``sinks.azure._block_ids``); the upload
stages and commits its blocks beside the check's, which the commit drops.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from tests.transfer.conftest import AZURE_CONN_ID, BUCKET


def test_the_checks_block_and_an_uploads_blocks_share_one_id_length_and_the_commit_drops_the_checks(
    azurite: Any,
) -> None:
    from airflow_provider_wan.transfers.sinks.azure import AzureBlobSink

    key = "wan/blocks.mp4"
    sink = AzureBlobSink(BUCKET, azure_conn_id=AZURE_CONN_ID, part_size=1024)
    blob = azurite.container.get_blob_client(key)
    sink.check(key)
    assert len(blob.get_block_list("uncommitted")[1]) == 1  # the check's 1-byte block, staged on the blob itself

    data = os.urandom(3 * 1024 + 5)
    upload = sink.open(key, metadata={"wan_task_id": "t-1"}, replacing=None)
    for start in range(0, len(data), 1024):
        upload.write(data[start : start + 1024])  # a block staged at each part_size
    staged = blob.get_block_list("uncommitted")[1]
    assert len(staged) == 1 + 3
    assert len({len(block.id) for block in staged}) == 1, "block ids of one blob differ in length"
    assert len({block.id for block in staged}) == len(staged)

    stored = upload.commit(size=len(data), md5=hashlib.md5(data).digest(), crc32c=None)
    assert stored.size == len(data)
    assert blob.download_blob().readall() == data
    committed, uncommitted = blob.get_block_list("all")
    assert [block.size for block in committed] == [1024, 1024, 1024, 5]
    assert uncommitted == []  # the check's block went with the commit
