"""
A local (or mounted) folder: the bytes go to a hidden temporary file beside the target, which is renamed over it
(atomic on one filesystem) only once verified. The metadata lives in a hidden JSON file beside the video
(``.<name>.wan-metadata.json``), written before the rename, since plain files carry none.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanTransferIntegrityError
from airflow_provider_wan.transfers.sinks import VIDEO_CONTENT_TYPE, Destination, Sink, Stored, Upload, b64

_READ = 1024 * 1024
#: the longest file or folder name of common filesystems (ext4, XFS, APFS, NTFS), in bytes
NAME_MAX = 255
_PARTIAL = ".wan-partial-"
#: the longest video file name: what its temporary twin ``.<name>.wan-partial-<transfer id>`` leaves
MAX_FILE_NAME = NAME_MAX - len(".") - len(_PARTIAL) - 32


class LocalSink(Sink):
    """Files under ``/`` (``file:///videos/{wan_task_id}.mp4``); parent folders are created."""

    kind = "folder"
    metadata_limit = 64 * 1024

    @classmethod
    def from_destination(cls, destination: Destination) -> LocalSink:
        return cls("/")

    def uri(self, key: str) -> str:
        return f"file:///{key}"

    def _path(self, key: str) -> Path:
        return Path("/") / key

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.wan-metadata.json")

    def check_key(self, key: str, parameter: str = "object_name") -> None:
        super().check_key(key, parameter)
        *folders, name = key.split("/")
        # the file's temporary twin (.<name>.wan-partial-<32 hex>) must fit the filesystem's 255 bytes too: a longer
        # name would fail on the first downloaded byte
        if len(name.encode("utf-8")) > MAX_FILE_NAME or any(len(f.encode("utf-8")) > NAME_MAX for f in folders):
            raise WanInvalidInputError(
                f"{parameter}: {key!r} has a file name over {MAX_FILE_NAME} bytes (or a folder name over {NAME_MAX}); "
                "shorten it"
            )

    def check(self) -> None:
        """Nothing to look up: the folders are created on the first byte."""

    def stat(self, key: str) -> Stored | None:
        path = self._path(key)
        if not path.is_file():
            if path.exists():
                raise WanFinalError(f"{self.uri(key)} exists and is not a file; nothing was downloaded")
            return None
        try:
            metadata = json.loads(self._meta_path(path).read_text("utf-8"))
        except (OSError, ValueError):
            metadata = {}
        md5 = hashlib.md5()
        with path.open("rb") as handle:
            while block := handle.read(_READ):
                md5.update(block)
        return Stored(
            uri=self.uri(key),
            size=path.stat().st_size,
            metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
            md5=b64(md5.digest()),
            version=str(path.stat().st_mtime_ns),
            content_type=mimetypes.guess_type(path.name)[0] or VIDEO_CONTENT_TYPE,
        )

    def read_range(self, key: str, start: int, length: int, *, version: str | None) -> bytes:
        path = self._path(key)
        if version is not None and str(path.stat().st_mtime_ns) != version:
            raise WanTransferIntegrityError(f"{self.uri(key)} was replaced while it was read")
        with path.open("rb") as handle:
            handle.seek(start)
            return handle.read(length)

    def open(self, key: str, *, metadata: Mapping[str, str], replacing: Stored | None) -> Upload:
        return _LocalUpload(self, key, dict(metadata), replacing)

    def put_small(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str], replacing: Stored | None
    ) -> Stored:
        return _LocalUpload(self, key, dict(metadata), replacing).write_whole(data)


class _LocalUpload(Upload):
    def __init__(self, sink: LocalSink, key: str, metadata: dict[str, str], replacing: Stored | None) -> None:
        self.sink = sink
        self.key = key
        self.metadata = metadata
        self.replacing = replacing
        self.path = sink._path(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.path.with_name(f".{self.path.name}{_PARTIAL}{metadata.get('wan_transfer_id', os.getpid())}")
        self.handle = self.temp.open("wb")

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self, *, size: int, md5: bytes, crc32c: bytes | None) -> Stored:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        # what the disk holds, read back: the same check a remote store's checksum gives
        digest = hashlib.md5()
        with self.temp.open("rb") as handle:
            while block := handle.read(_READ):
                digest.update(block)
        kept = self.temp.stat().st_size
        if kept != size or digest.digest() != md5:
            raise WanTransferIntegrityError(
                f"{self.sink.uri(self.key)}: the file written ({kept} bytes) does not match the {size} bytes "
                "downloaded; nothing was kept"
            )
        if self.replacing is None and self.path.exists():
            raise WanFinalError(f"{self.sink.uri(self.key)} appeared while this copy ran; nothing was replaced")
        metadata = {**self.metadata, "wan_source_bytes": str(size), "wan_source_md5": b64(md5)}
        meta_path = LocalSink._meta_path(self.path)
        meta_temp = meta_path.with_name(meta_path.name + ".partial")
        meta_temp.write_text(json.dumps(metadata, ensure_ascii=False, sort_keys=True), "utf-8")
        os.replace(meta_temp, meta_path)
        os.replace(self.temp, self.path)  # visible only now, whole
        stored = self.sink.stat(self.key)
        assert stored is not None
        return stored

    def abort(self) -> None:
        try:
            self.handle.close()
            self.temp.unlink(missing_ok=True)
        except OSError:
            pass
