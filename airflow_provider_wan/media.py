"""
Media inputs: local files and ``gs://`` objects, checked and then uploaded to DashScope's temporary storage.

DashScope fetches media from URLs. For anything else the official SDK uploads the file first, and so do we, the
same way: ``GET {base}/uploads?action=getPolicy&model=...`` returns a short-lived OSS post policy; the file goes to
its ``upload_host`` as a form upload under ``{upload_dir}/{file name}``; the request then refers to it as
``oss://{upload_dir}/{file name}`` and carries ``X-DashScope-OssResourceResolve: enable`` (the hook adds it when a
body holds an ``oss://`` URL). Files expire from that storage after 48 hours.

Files are streamed: the form body is produced piece by piece while the socket sends it, so a 200 MB video costs a
few hundred kilobytes of memory (``benchmarks/upload_memory.py``). Before anything is sent, every file is checked
against the limits of its field (:data:`airflow_provider_wan.schema.MEDIA_SPECS`): existence, bytes, format (magic
bytes), image sides, and the duration of audio and video (:mod:`airflow_provider_wan.durations`: WAV, MP3, AVI,
MP4 and MOV, from their headers or frame headers).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import mimetypes
import os
import posixpath
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_wan.durations import audio_stream_format, id3_end, media_seconds
from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanRetryableError
from airflow_provider_wan.images import image_size, sniff_format
from airflow_provider_wan.models import get_model
from airflow_provider_wan.redact import url_host
from airflow_provider_wan.schema import MediaRef, MediaSpec, is_remote, media_references

if TYPE_CHECKING:
    from airflow_provider_wan.hooks.wan import WanHook

__all__ = [
    "LocalMedia",
    "MultipartStream",
    "check_data_uri",
    "check_local_media",
    "measure_file",
    "open_regular_file",
    "sniff_media",
    "upload_all",
    "upload_media",
]

#: bytes read from the start of a file to learn its format and, for images, its sides
_HEAD_BYTES = 256 * 1024
_CHUNK = 256 * 1024


def sniff_media(head: bytes, name: str) -> str | None:
    """The format of a media file from its first bytes (extension for plain-text documents), or None."""
    image = sniff_format(head)
    if image is not None:
        return image
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:3] == b"ID3":
        # an ID3 tag says nothing of the codec: an AAC stream may follow it (when the head holds what follows)
        return "AAC" if audio_stream_format(head[id3_end(head) :]) == "AAC" else "MP3"
    audio = audio_stream_format(head)
    if audio is not None:
        return audio
    if head[4:8] == b"ftyp":
        return "MOV" if head[8:12] == b"qt  " else "MP4"
    if head[:4] == b"%PDF":
        return "PDF"
    if head[:2] == b"PK" and name.lower().endswith(".docx"):
        return "DOCX"
    suffix = posixpath.splitext(name.lower())[1]
    if suffix in (".txt", ".md"):
        return suffix[1:].upper()
    return None


@dataclass
class LocalMedia:
    """A media file we read ourselves: a local path or a GCS object, already checked."""

    ref: MediaRef
    name: str
    #: bytes counted while reading the file (never its st_size or object metadata)
    size: int
    format: str
    opener: Callable[[], IO[bytes]]
    #: sha256 of the bytes read: what the request fingerprint holds in place of the (upload-dependent) URL
    digest: str = ""

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"


def _fail(ref: MediaRef, model: str, problem: str) -> WanInvalidInputError:
    return WanInvalidInputError(f"{ref.parameter}: {problem}; {model} takes: {ref.spec.describe()}")


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular_file(path: Path) -> IO[bytes]:
    """
    Open ``path`` for reading only if it is a regular file (a symlink counts as what it points to).

    The check is made on the open descriptor, so nothing can be swapped in between; ``O_NONBLOCK`` makes opening a
    FIFO return at once instead of waiting for a writer. Raises OSError (``strerror`` says why) otherwise.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
            raise OSError(errno.EINVAL, f"{kind}; only regular files are read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _local(ref: MediaRef, model: str) -> tuple[str, Callable[[], IO[bytes]]]:
    value = ref.value
    path = Path(value[len("file://") :] if value.startswith("file://") else value).expanduser()
    try:
        open_regular_file(path).close()
    except OSError as exc:
        raise _fail(
            ref,
            model,
            f"cannot read local file {str(path)!r} ({exc.strerror or type(exc).__name__}); give an http(s) URL, a "
            "gs://bucket/object URI or a readable local path",
        ) from None
    return path.name, lambda: open_regular_file(path)


def _gcs(ref: MediaRef, model: str, gcp_conn_id: str | None) -> tuple[str, Callable[[], IO[bytes]]]:
    bucket_name, _, object_name = ref.value[len("gs://") :].partition("/")
    if not bucket_name or not object_name:
        raise _fail(ref, model, f"{ref.value!r} is not a gs://bucket/object URI")
    from airflow_provider_wan.gcs import storage_client

    blob = storage_client(gcp_conn_id).bucket(bucket_name).get_blob(object_name)
    if blob is None:
        raise _fail(ref, model, f"GCS object {ref.value} does not exist")
    if blob.size is not None and int(blob.size) > ref.spec.max_bytes:
        raise _fail(ref, model, f"{posixpath.basename(object_name)} is {int(blob.size) / 1_048_576:.1f} MB")
    return posixpath.basename(object_name), lambda: blob.open("rb")


def measure_file(opener: Callable[[], IO[bytes]], limit: int) -> tuple[int, str, bytes]:
    """
    Read a file once, never past ``limit`` + 1 bytes: its byte count, sha256 and first bytes. Whatever its size
    claims (a device, a /proc file, a file still growing), the read stops there, in chunks: memory stays small.
    """
    digest = hashlib.sha256()
    head = b""
    size = 0
    with opener() as handle:
        while size <= limit:
            chunk = handle.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            if len(head) < _HEAD_BYTES:
                head += chunk[: _HEAD_BYTES - len(head)]
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest(), head


#: ``data:[<mime>][;param...];base64,<payload>``
_DATA_URI = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.ASCII)
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp"}


def check_data_uri(ref: MediaRef, model: str) -> None:
    """
    Check a ``data:`` URI with its field's rules, as a file would be (bytes, format, image sides), and that its
    declared MIME type is the image's own. Its size is judged from the text's length before anything is decoded.
    """
    spec = ref.spec
    shape = "data:image/<type>;base64,<data>"
    match = _DATA_URI.match(ref.value)
    if match is None or "base64" not in [p.strip().lower() for p in match["params"].split(";")]:
        raise _fail(ref, model, f"a data: URI must be {shape}")
    # judged before the payload is copied out or decoded: an oversized URI costs no memory of its own
    length = len(ref.value) - match.end()
    if length > (spec.max_bytes + 2) // 3 * 4 + 4096:
        raise _fail(ref, model, f"the data: URI holds about {length * 3 // 4 / 1_048_576:.1f} MB")
    payload = ref.value[match.end() :]
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _fail(ref, model, f"the data: URI's payload is not valid base64 ({shape})") from None
    if len(data) > spec.max_bytes:
        raise _fail(ref, model, f"the data: URI holds {len(data) / 1_048_576:.1f} MB")
    fmt = sniff_media(data[:_HEAD_BYTES], "")
    if fmt not in spec.formats or fmt not in _MIME:
        raise _fail(ref, model, f"the data: URI holds {'no image' if fmt is None else fmt}")
    declared = match["mime"].strip().lower()
    if declared != _MIME[fmt] and not (declared == "image/jpg" and fmt == "JPEG"):
        raise _fail(ref, model, f"the data: URI says {declared or 'no type'!r} but holds {_MIME[fmt]}")
    _check_contents(ref, model, "the data: URI's image", fmt, data[:_HEAD_BYTES], spec)


def check_local_media(input_: dict[str, Any], model: str, *, gcp_conn_id: str | None = None) -> list[LocalMedia]:
    """
    Find every media reference of ``input_`` that is not a URL, and check it against its field's limits;
    ``data:`` URIs are checked too, and stay in the body as they are.

    Each file is read once, at most to its limit + 1 byte (counting, hashing and keeping its first bytes). Nothing
    is uploaded here.

    :raises WanInvalidInputError: naming the field, the model and what it takes
    """
    found = []
    # the reference videos' seconds together, at least (the catalogue may bound the sum: Wan 3.0)
    references_last = 0.0
    for ref in media_references(input_):
        if ref.value.startswith("data:"):
            check_data_uri(ref, model)
            continue
        if is_remote(ref.value):
            continue
        if ref.value.startswith("gs://"):
            name, opener = _gcs(ref, model, gcp_conn_id)
        elif "://" in ref.value and not ref.value.startswith("file://"):
            scheme = ref.value.split("://", 1)[0]
            # references are told apart by their lower-case prefix (is_remote): say so, not just "not supported"
            hint = f" (write {scheme.lower()}:// in lower case)" if scheme.lower() in ("http", "https", "oss") else ""
            raise _fail(ref, model, f"{scheme}:// is not a supported source{hint}")
        else:
            name, opener = _local(ref, model)
        spec = ref.spec
        size, digest, head = measure_file(opener, spec.max_bytes)
        if size > spec.max_bytes:
            raise _fail(ref, model, f"{name} is larger than {spec.max_bytes // 1_048_576} MB")
        fmt = sniff_media(head, name)
        if fmt not in spec.formats:
            raise _fail(ref, model, f"{name} is {'of an unknown format' if fmt is None else fmt}")
        _check_contents(ref, model, name, fmt, head, spec)
        if spec.seconds:
            lasts = media_seconds(fmt, head, opener, size)
            _check_seconds(ref, model, name, lasts, spec.seconds)
            if lasts is not None and ref.key == "url" and ref.container.get("type") == "reference_video":
                references_last += lasts[0]
        found.append(LocalMedia(ref, name, size, fmt, opener, digest))
    entry = get_model(model)
    limit = entry.reference_video_seconds if entry is not None else None
    if limit is not None and references_last > limit:
        raise WanInvalidInputError(
            f"media: the reference videos last {references_last:.1f} s in all; {model} takes at most {limit:g} s "
            "of reference video in all"
        )
    return found


def _check_contents(ref: MediaRef, model: str, name: str, fmt: str, head: bytes, spec: MediaSpec) -> None:
    if spec.min_side and spec.max_side and fmt in ("JPEG", "PNG", "BMP", "WEBP"):
        sides = image_size(head, fmt)
        if sides is not None:
            width, height = sides
            if not (spec.min_side <= width <= spec.max_side and spec.min_side <= height <= spec.max_side):
                raise _fail(ref, model, f"{name} is {width}x{height} px")


def _check_seconds(
    ref: MediaRef, model: str, name: str, lasts: tuple[float, float] | None, allowed: tuple[float, float]
) -> None:
    """Refuse a file that certainly lasts less or more than ``allowed`` (``lasts``: at least, at most seconds)."""
    low, high = allowed
    if lasts is None or (lasts[1] >= low and lasts[0] <= high):
        return
    seconds = lasts[1] if lasts[1] < low else lasts[0]
    # one decimal, unless it would round into the range (30.04 s is not "30.0 s" where 3-30 s is allowed)
    shown = f"{seconds:.1f}" if not low <= round(seconds, 1) <= high else f"{seconds:.2f}"
    raise _fail(ref, model, f"{name} lasts {shown} s")


class MultipartStream:
    """
    A ``multipart/form-data`` body read piece by piece: the form fields, then the file, streamed from its opener.

    ``len()`` is the exact byte count, so the upload carries a Content-Length (OSS post uploads need one) without
    the body ever being in memory. Deliberately neither iterable nor seekable: requests then sends it with that
    length, reading it block by block, instead of switching to chunked encoding.
    """

    def __init__(
        self,
        fields: list[tuple[str, str]],
        file_name: str,
        content_type: str,
        size: int,
        opener: Callable[[], IO[bytes]],
    ) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._length = len(head) + size + len(self._tail)
        self._pieces = self._generate(head, opener, size)
        self._pending = b""

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def _generate(self, head: bytes, opener: Callable[[], IO[bytes]], size: int) -> Iterator[bytes]:
        yield head
        remaining = size
        with opener() as handle:
            # the checked size, not a byte more: a file that grew since would break Content-Length
            while remaining > 0 and (chunk := handle.read(min(_CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk
        if remaining:
            raise WanRetryableError("a file shrank while it was uploaded; nothing was submitted")
        yield self._tail

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._length
        while len(self._pending) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._pending += piece
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


def upload_media(hook: WanHook, model: str, media: LocalMedia) -> str:
    """Upload one checked file to DashScope's temporary storage; return its ``oss://`` URL and write it back."""
    policy = hook.get_upload_policy(model)
    try:
        key = f"{policy['upload_dir']}/{media.name}"
        fields = [
            ("OSSAccessKeyId", str(policy["oss_access_key_id"])),
            ("Signature", str(policy["signature"])),
            ("policy", str(policy["policy"])),
            ("key", key),
            ("x-oss-object-acl", str(policy["x_oss_object_acl"])),
            ("x-oss-forbid-overwrite", str(policy["x_oss_forbid_overwrite"])),
            ("success_action_status", "200"),
            ("x-oss-content-type", media.content_type),
        ]
        host = str(policy["upload_host"])
    except KeyError as exc:
        raise WanRetryableError(f"DashScope's upload policy for {model} lacks {exc.args[0]!r}") from None
    import requests

    from airflow_provider_wan.hooks.classify import refused_proxy_certificate
    from airflow_provider_wan.hooks.guard import (
        CERTIFICATE_REFUSED,
        RefusedAddress,
        certificate_refused,
        guarded_session,
        refusing_proxy,
    )
    from airflow_provider_wan.hooks.wan import link_address_problem, link_problem

    base_url = hook.credentials.base_url
    # the answer names where the user's file goes: never this machine, the metadata service or the private network
    # (unless the API is there too), never plain http when the API is https; a host NAME is judged by the address
    # the connection reaches (the guarded session)
    why = link_problem(host, base_url, sends_data=True)
    if why:
        raise _refused(media, host, why)
    body = MultipartStream(fields, media.name, media.content_type, media.size, media.opener)
    with guarded_session(lambda address: link_address_problem(address, base_url)) as session:
        try:
            response = session.post(
                host,
                data=body,
                headers={
                    "Content-Type": body.content_type,
                    "Content-Length": str(len(body)),
                    "Accept": "application/json",
                    "Date": formatdate(usegmt=True),
                },
                timeout=(10, 3600),
                # the policy names the one host to post to: a redirect elsewhere is refused, not followed
                allow_redirects=False,
            )
        except RefusedAddress as refused:
            raise _refused(media, host, f"{refused.why}; the connection was closed before a byte was sent") from None
        except requests.exceptions.RequestException as exc:
            proxy = refusing_proxy(exc, host)
            if proxy is not None:
                # the https:// proxy's own certificate: nothing was sent to it, let alone to the upload host
                doing = f"uploading {media.name} to {url_host(host)} (the upload_host of DashScope's upload policy)"
                raise WanFinalError(
                    f"{media.ref.parameter}: {refused_proxy_certificate(proxy, doing)} Nothing was uploaded or "
                    "submitted"
                ) from None
            if certificate_refused(exc):
                raise _refused(media, host, CERTIFICATE_REFUSED) from None
            raise WanRetryableError(
                f"{media.ref.parameter}: uploading {media.name} to DashScope's temporary storage failed "
                f"({type(exc).__name__}); nothing was submitted"
            ) from None
    if response.status_code != 200:
        code = _oss_code(response.text)
        raise WanRetryableError(
            f"{media.ref.parameter}: DashScope's temporary storage refused {media.name} (HTTP "
            f"{response.status_code}{', ' + code if code else ''}); nothing was submitted",
            http_status=response.status_code,
        )
    url = f"oss://{key}"
    media.ref.replace(url)
    return url


def _refused(media: LocalMedia, host: str, why: str) -> WanFinalError:
    """The upload host an upload policy named is refused: a final error naming the parameter and the host only."""
    return WanFinalError(
        f"{media.ref.parameter}: refused to upload {media.name} to {url_host(host)} (the upload_host of DashScope's "
        f"upload policy): {why}. Nothing was uploaded or submitted; check the connection's base_url and any proxy "
        "in between"
    )


_OSS_CODE = re.compile(r"<Code>([A-Za-z][A-Za-z0-9]{0,63})</Code>")


def _oss_code(text: str) -> str | None:
    """OSS's error ``<Code>``, only when it is code-shaped: the rest of its answer is never echoed into our text."""
    match = _OSS_CODE.search(text)
    return match.group(1) if match else None


def upload_all(hook: WanHook, model: str, found: list[LocalMedia], log: Any = None) -> None:
    """Upload every checked file of a request (one policy per file, as the SDK does)."""
    for media in found:
        url = upload_media(hook, model, media)
        if log is not None:
            log.info("Uploaded %s (%s, %.1f MB) as %s", media.ref.parameter, media.name, media.size / 1_048_576, url)
