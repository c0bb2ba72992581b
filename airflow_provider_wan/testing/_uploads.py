"""
The simulator's temporary storage: DashScope's upload policy endpoint and an OSS-style upload host on loopback.

* ``GET /api/v1/uploads?action=getPolicy&model=M`` (Bearer key) -> ``{request_id, data: {policy, signature,
  upload_dir, upload_host, expire_in_seconds, max_file_size_mb, capacity_limit_mb, oss_access_key_id,
  x_oss_object_acl, x_oss_forbid_overwrite}}``, the shape the official SDK reads;
* ``POST /_oss`` (``upload_host``): an OSS post-object form upload (fields, then ``file``), checked as OSS checks
  it: the policy's signature and expiry, the key under the policy's directory, the size limit, no overwrite. The file
  is streamed to disk; the answer is an empty 200 (``success_action_status``);
* :func:`resolve_oss` maps an ``oss://`` URL of a create request to the stored file, or says why it cannot (unknown,
  expired after ``upload_ttl_seconds``, header ``X-DashScope-OssResourceResolve: enable`` missing).

Kept apart from the task routes so the fault-injection work in ``server.py`` stays independent of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["UPLOAD_PATH", "UploadStore", "add_upload_routes", "resolve_oss"]

UPLOAD_PATH = "/_oss"
_OSS_BUCKET = "dashscope-instant"
_MAX_FILE_MB = 1024
_CHUNK = 256 * 1024


@dataclass
class StoredFile:
    path: Path
    size: int
    content_type: str
    expires: float


class UploadStore:
    """Uploaded files of one simulator: on disk in a private directory, by ``oss://`` key, with their expiry."""

    def __init__(self) -> None:
        self.secret = secrets.token_bytes(32)
        self.directory = Path(tempfile.mkdtemp(prefix="wan-sim-uploads-"))
        self.files: dict[str, StoredFile] = {}
        self.uploads = 0
        self.policies = 0
        self.bytes_stored = 0

    def sign(self, policy: str) -> str:
        return base64.b64encode(hmac.new(self.secret, policy.encode(), hashlib.sha1).digest()).decode()

    def clear(self) -> None:
        for stored in self.files.values():
            stored.path.unlink(missing_ok=True)
        self.files.clear()
        self.uploads = self.policies = self.bytes_stored = 0

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


STORE_KEY = web.AppKey("wan_simulator_uploads", UploadStore)


def _oss_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:24].upper()}</RequestId><HostId>wan-simulator.oss.local</HostId></Error>\n"
    )
    return web.Response(text=body, status=status, content_type="application/xml")


def make_policy(request: web.Request, model: str, now: float, policy_ttl: float) -> dict[str, Any]:
    """A signed post policy for one upload directory, in the fields DashScope's getPolicy returns."""
    store = request.app[STORE_KEY]
    store.policies += 1
    upload_dir = f"{_OSS_BUCKET}/{hashlib.sha1(model.encode()).hexdigest()[:8]}/{time.strftime('%Y-%m-%d')}/" + (
        uuid.uuid4().hex
    )
    expiration = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now + policy_ttl))
    document = {
        "expiration": expiration,
        "conditions": [["content-length-range", 0, _MAX_FILE_MB * 1_048_576], ["starts-with", "$key", upload_dir]],
    }
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    return {
        "policy": policy,
        "signature": store.sign(policy),
        "upload_dir": upload_dir,
        "upload_host": f"{request.scheme}://{request.host}{UPLOAD_PATH}",
        "expire_in_seconds": int(policy_ttl),
        "max_file_size_mb": _MAX_FILE_MB,
        "capacity_limit_mb": 999_999_999,
        "oss_access_key_id": "LTAI5tWanSimulatorUpload",
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }


async def upload(request: web.Request, file_ttl: float) -> web.Response:
    """POST /_oss: an OSS post-object form upload, streamed to disk."""
    store = request.app[STORE_KEY]
    if not request.content_type.startswith("multipart/form-data"):
        return _oss_error(
            400, "InvalidArgument", "The body of your POST request is not well-formed multipart/form-data."
        )
    reader = await request.multipart()
    fields: dict[str, str] = {}
    while True:
        part = await reader.next()
        if part is None:
            return _oss_error(400, "InvalidArgument", "The file field is missing.")
        name = getattr(part, "name", None)
        if name != "file":
            fields[str(name)] = (await part.read(decode=True)).decode()  # type: ignore[union-attr]
            continue
        problem = _check_form(store, fields)
        if problem is not None:
            return problem
        key = fields["key"]
        if key in store.files and fields.get("x-oss-forbid-overwrite") == "true":
            return _oss_error(
                409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten."
            )
        target = store.directory / hashlib.sha1(key.encode()).hexdigest()
        size = 0
        with target.open("wb") as handle:
            while chunk := await part.read_chunk(_CHUNK):  # type: ignore[union-attr]
                size += len(chunk)
                if size > _MAX_FILE_MB * 1_048_576:
                    target.unlink(missing_ok=True)
                    return _oss_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
                handle.write(chunk)
        store.files[key] = StoredFile(
            target, size, fields.get("x-oss-content-type", "application/octet-stream"), time.time() + file_ttl
        )
        store.uploads += 1
        store.bytes_stored += size
        status = int(fields.get("success_action_status") or 204)
        return web.Response(status=status if status in (200, 201, 204) else 204)


def _check_form(store: UploadStore, fields: dict[str, str]) -> web.Response | None:
    for needed in ("OSSAccessKeyId", "policy", "Signature", "key"):
        if not fields.get(needed):
            return _oss_error(400, "InvalidArgument", f"The {needed} field is missing.")
    if not hmac.compare_digest(store.sign(fields["policy"]), fields["Signature"]):
        return _oss_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
    try:
        document = json.loads(base64.b64decode(fields["policy"]))
        expires = time.mktime(time.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%S.000Z")) - time.timezone
        prefix = next(c[2] for c in document["conditions"] if c[0] == "starts-with")
    except (ValueError, KeyError, StopIteration):
        return _oss_error(400, "InvalidPolicyDocument", "The content of the policy document is invalid.")
    if time.time() > expires:
        return _oss_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    if not fields["key"].startswith(prefix + "/"):
        return _oss_error(403, "AccessDenied", "Invalid according to Policy: Policy Condition failed: key.")
    return None


def resolve_oss(app: web.Application, url: str, now: float) -> StoredFile | str:
    """The stored file of an ``oss://`` URL, or why DashScope could not resolve it."""
    stored = app[STORE_KEY].files.get(url[len("oss://") :])
    if stored is None:
        return f"The oss resource {url} does not exist."
    if now > stored.expires:
        return f"The oss resource {url} has expired (temporary files live 48 hours)."
    return stored


def add_upload_routes(app: web.Application, policy_handler: Any, upload_handler: Any) -> None:
    app[STORE_KEY] = UploadStore()

    async def cleanup(app: web.Application) -> None:
        app[STORE_KEY].close()

    app.on_cleanup.append(cleanup)
    app.router.add_get("/api/v1/uploads", policy_handler, allow_head=False)
    app.router.add_post(UPLOAD_PATH, upload_handler)
