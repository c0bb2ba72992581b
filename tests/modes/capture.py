"""
A local server that records what a DashScope client sends, including the temporary-upload flow: it answers the
upload policy request and takes the form upload itself, like DashScope's and OSS's hosts together. Its policy may
name another ``upload_host`` (:attr:`UploadCaptureServer.upload_host`), and it may serve TLS under a host name.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from email import policy as email_policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class UploadCaptureServer:
    """
    Records creates (path, headers, JSON body), policy requests (query) and uploads (form fields, file bytes).

    :param host: the name or address its URLs use (default ``127.0.0.1``; a name must resolve there)
    :param certificate: a certificate for ``host`` and its key (PEM files): serve https (default: plain http)
    """

    def __init__(self, *, host: str = "127.0.0.1", certificate: tuple[Path, Path] | None = None) -> None:
        self.creates: list[dict[str, Any]] = []
        self.policies: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        owner = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if not self.path.startswith("/api/v1/uploads?"):
                    self._answer(404, b"{}")
                    return
                with lock:
                    owner.policies.append(self.path.split("?", 1)[1])
                policy = {
                    "policy": "cG9saWN5",
                    "signature": "c2lnbmF0dXJl",
                    "upload_dir": f"dashscope-instant/capture/{uuid.uuid4().hex}",
                    "upload_host": owner.upload_host or f"{owner.origin}/_oss",
                    "expire_in_seconds": 300,
                    "max_file_size_mb": 1024,
                    "capacity_limit_mb": 999999,
                    "oss_access_key_id": "LTAIcapture",
                    "x_oss_object_acl": "private",
                    "x_oss_forbid_overwrite": "true",
                }
                self._answer(200, json.dumps({"request_id": "r", "data": policy}).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path == "/_oss":
                    head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                    message = BytesParser(policy=email_policy.default).parsebytes(head + raw)
                    fields: dict[str, Any] = {}
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        fields[str(name)] = part.get_payload(decode=True)
                    with lock:
                        owner.uploads.append(fields)
                    self._answer(200, b"", "text/plain")
                    return
                with lock:
                    owner.creates.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": json.loads(raw) if raw else None,
                        }
                    )
                answer = {"request_id": "r", "output": {"task_id": str(uuid.uuid4()), "task_status": "PENDING"}}
                self._answer(200, json.dumps(answer).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.origin = f"{'https' if certificate else 'http'}://{host}:{self.port}"
        #: the upload_host its policies name; None: itself (``{origin}/_oss``)
        self.upload_host: str | None = None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v1"

    def reset(self) -> None:
        self.creates.clear()
        self.policies.clear()
        self.uploads.clear()

    def __enter__(self) -> UploadCaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
