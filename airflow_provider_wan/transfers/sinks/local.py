"""
A local (or mounted) folder: the bytes go to a hidden temporary file beside the target, which is renamed over it
(atomic on one filesystem) only once verified. The metadata lives in a hidden JSON file beside the video
(``.<name>.wan-metadata.json``), written before the rename, since plain files carry none.

The temporary file, ``.<name>.wan-partial-<transfer id>``, is new for every attempt, and a writer holds an exclusive
``flock`` on it until it is renamed or removed. A worker killed outright (SIGKILL: the OOM killer, a pod evicted)
removes nothing, so a transfer to ``<name>`` first removes the partial twins whose writer is gone: no lock held (the
kernel drops a dead process's locks; Linux's NFS client makes them locks the server keeps for every machine) and
nothing written for :data:`STALE_PARTIAL_SECONDS`, the guard where a mount keeps locks to one machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mimetypes
import os
import re
import stat
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanTransferIntegrityError
from airflow_provider_wan.transfers.sinks import VIDEO_CONTENT_TYPE, Destination, Sink, Stored, Upload, b64

_READ = 1024 * 1024
#: the longest file or folder name of common filesystems (ext4, XFS, APFS, NTFS), in bytes
NAME_MAX = 255
_PARTIAL = ".wan-partial-"
#: the longest video file name: what its temporary twin ``.<name>.wan-partial-<transfer id>`` leaves
MAX_FILE_NAME = NAME_MAX - len(".") - len(_PARTIAL) - 32
#: a transfer id (32 hex digits), or the process id older versions named the temporary files of small objects by
_TRANSFER_ID = re.compile(r"[0-9a-f]{1,32}")
#: an unlocked partial file is removed once nothing was written to it for this long (seconds). A live writer writes at
#: least once per read timeout (60 s by default) while bytes flow, and holds its lock throughout; the idle time guards
#: what the lock cannot: a file created an instant ago (not yet locked), a mount that keeps locks to one machine, an
#: older version's writer (no lock). Airflow's default retry_delay (300 s) is longer: a retry removes what the killed
#: attempt left
STALE_PARTIAL_SECONDS = 120.0


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
        if "\0" in key:
            # no file system names a file with one: it failed with a raw ValueError once the download began
            raise WanInvalidInputError(f"{parameter}: {key!r} has a NUL character, which no file name can hold")
        *folders, name = key.split("/")
        # the file's temporary twin (.<name>.wan-partial-<32 hex>) must fit the filesystem's 255 bytes too: a longer
        # name would fail on the first downloaded byte
        if len(name.encode("utf-8")) > MAX_FILE_NAME or any(len(f.encode("utf-8")) > NAME_MAX for f in folders):
            raise WanInvalidInputError(
                f"{parameter}: {key!r} has a file name over {MAX_FILE_NAME} bytes (or a folder name over {NAME_MAX}); "
                "shorten it"
            )

    def check(self, key: str) -> None:
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

    def remove_leftovers(self, keys: Iterable[str]) -> list[str]:
        """The partial twins of ``keys`` whose writer is gone, removed (see the module's docstring); their URIs."""
        removed = []
        for key in dict.fromkeys(keys):
            path = self._path(key)
            prefix = f".{path.name}{_PARTIAL}"
            try:
                with os.scandir(path.parent) as entries:
                    names = [
                        entry.name
                        for entry in entries
                        if entry.name.startswith(prefix) and _TRANSFER_ID.fullmatch(entry.name[len(prefix) :])
                    ]
            except OSError:
                continue  # no folder yet (nothing left there), or one this worker cannot read
            for name in names:
                if _remove_if_abandoned(path.parent / name):
                    removed.append(f"file://{path.parent / name}")
        return removed

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
        transfer_id = metadata.get("wan_transfer_id") or uuid.uuid4().hex
        self.temp = self.path.with_name(f".{self.path.name}{_PARTIAL}{transfer_id}")
        # a new name: never another writer's file
        self.handle = self.temp.open("xb")
        # held until the file is renamed or removed: another transfer to this name sees a live writer (on a
        # filesystem without locks, the file's idle time alone tells: STALE_PARTIAL_SECONDS)
        with contextlib.suppress(OSError):
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self, *, size: int, md5: bytes, crc32c: bytes | None) -> Stored:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        # the handle (and its lock) stays open until the rename: the file is ours until it has its name
        # what the disk holds, read back: the same check a remote store's checksum gives
        digest = hashlib.md5()
        try:
            with self.temp.open("rb") as handle:
                while block := handle.read(_READ):
                    digest.update(block)
                kept = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            raise WanTransferIntegrityError(
                f"{self.sink.uri(self.key)}: the partial file {self.temp.name} was removed before it was complete "
                "(by hand, or by a transfer to the same name that found it unlocked and idle for "
                f"{STALE_PARTIAL_SECONDS:.0f} s: a mount without shared locks); nothing was kept"
            ) from None
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
        self.handle.close()
        stored = self.sink.stat(self.key)
        assert stored is not None
        return stored

    def abort(self) -> None:
        # removed while still locked: no other transfer judges it abandoned in between
        with contextlib.suppress(OSError):
            self.temp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.handle.close()


def _remove_if_abandoned(path: Path) -> bool:
    """
    Remove the partial file at ``path`` if its writer is gone: no lock held on it, nothing written to it for
    :data:`STALE_PARTIAL_SECONDS`. True when it was removed; never raises.
    """
    try:
        # a symbolic link at that name is not followed, a FIFO does not block (neither is removed: not a regular file)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False  # gone meanwhile, a symbolic link, or not this worker's to read
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode) or time.time() - held.st_mtime < STALE_PARTIAL_SECONDS:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it, on this machine or (NFS) another
        except OSError:
            pass  # a filesystem without locks: the idle time decided
        named = os.lstat(path)
        if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            return False  # replaced meanwhile: not the file judged
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
