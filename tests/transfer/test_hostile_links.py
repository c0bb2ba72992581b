"""
Hostile video links, through real HTTP: DashScope's answer names a link (a ``video_url``) that redirects in a loop,
to another scheme, to a port that cannot exist, or that is no http(s) URL at all; OSS answers an expired link with an
XML error whose message quotes a signed URL. Each is a clear error of ours that keeps nothing and never shows the
signed link; a redirect to the video elsewhere is followed and lands whole.

The link's server here is a small HTTP server on 127.0.0.1 (``LinkServer``); the task and its video are the
simulator's, the destination a local folder.
"""

from __future__ import annotations

import json
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from airflow_provider_wan.exceptions import (
    WanFinalError,
    WanResultExpiredError,
    WanRetryableError,
    WanTransferIntegrityError,
)
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator
from tests.certificates import self_signed_certificate

T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
MODEL = "wan2.5-t2v-preview"
#: the signature of every hostile link: it must never appear in an error
SIGNATURE = "aG9zdGlsZS1saW5rLXNpZ25hdHVyZQ"
#: an MP4's first box (``ftyp``, 24 bytes)
MP4_FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


class LinkServer:
    """
    Answers ``/to?u=<url>`` with a 302 to that URL and ``/loop`` with a 302 to itself; counts requests. Bodies:
    ``/endless`` (a web page without end), ``/mp4`` (an MP4's first boxes, then zeros without end), ``/stall`` (an
    MP4's first 64 KiB, then nothing until the server stops).
    """

    def __init__(self, certificate: tuple[Path, Path] | None = None) -> None:
        self.paths: list[str] = []
        paths = self.paths
        #: body bytes written by /endless and /mp4
        self.sent: list[int] = []
        sent = self.sent
        #: set when the server stops: /stall answers end
        self.stopping = threading.Event()
        stopping = self.stopping
        #: what /unvalidated serves: the first answer is the first file, cut; every later one the last file
        self.files: list[bytes] = []
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                paths.append(self.path)
                if self.path.startswith("/endless"):
                    self._endless()
                    return
                if self.path.startswith("/mp4"):
                    self._mp4(parse_qs(urlsplit(self.path).query).get("announce", [""])[0])
                    return
                if self.path.startswith("/stall"):
                    self._stall()
                    return
                if self.path.startswith("/echo"):
                    self._echo()
                    return
                if self.path.startswith("/unvalidated"):
                    self._unvalidated(len([path for path in paths if path.startswith("/unvalidated")]))
                    return
                if self.path.startswith("/superscript-length"):
                    # a length of Latin-1 digits: str.isdigit() takes "\u00b2" for one, int() does not
                    self.send_response(200)
                    self.send_header("Content-Length", "\u00b2")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(MP4_FTYP)
                    return
                if self.path.startswith("/slowloop"):
                    time.sleep(1.5)  # each hop well inside the per-read timeout
                    location = f"/slowloop?n={len(paths)}&Signature={SIGNATURE}"
                elif self.path.startswith("/loop"):
                    location = f"/loop?n={len(paths)}&Signature={SIGNATURE}"
                else:
                    location = parse_qs(urlsplit(self.path).query)["u"][0]
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _endless(self) -> None:
                """200, a web page's bytes without end (a portal, a proxy's error page stuck in a loop)."""
                page = b"<!DOCTYPE html><html><body>" + b"x" * (64 * 1024 - 28)
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                if "length" in self.path:
                    self.send_header("Content-Length", str(1 << 40))  # a terabyte announced
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(page)
                        sent.append(len(page))
                except OSError:
                    pass

            def _mp4(self, announce: str) -> None:
                """
                A body that keeps looking like an MP4: ``ftyp``, then an ``mdat`` box that runs to the end, then zeros
                without end. ``announce``: "" announces no length (200, the box runs to the end of the body),
                "length" a terabyte (200 with Content-Length), "range" a terabyte as a Content-Range total (206),
                "range-end" a range ending after a terabyte, total unknown (206, ``bytes 0-N/*``).
                """
                total = 1 << 40
                if announce:
                    mdat = struct.pack(">I4sQ", 1, b"mdat", total - len(MP4_FTYP))  # a 64-bit size, to the end
                else:
                    mdat = struct.pack(">I4s", 0, b"mdat")  # size 0: up to the end of the file
                self.send_response(206 if announce.startswith("range") else 200)
                self.send_header("Content-Type", "video/mp4")
                if announce.startswith("range"):
                    known = "*" if announce == "range-end" else str(total)
                    self.send_header("Content-Range", f"bytes 0-{total - 1}/{known}")
                if announce:
                    self.send_header("Content-Length", str(total))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                zeros = b"\x00" * (64 * 1024)
                try:
                    self.wfile.write(MP4_FTYP + mdat)
                    while True:
                        self.wfile.write(zeros)
                        sent.append(len(zeros))
                except OSError:
                    pass

            def _stall(self) -> None:
                """200 announcing 10 MiB of MP4; the first 64 KiB are sent, then nothing until the server stops."""
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(10 * 1024 * 1024))
                self.end_headers()
                mdat = struct.pack(">I4s", 10 * 1024 * 1024 - len(MP4_FTYP), b"mdat")
                try:
                    self.wfile.write(MP4_FTYP + mdat + b"\x00" * (64 * 1024 - len(MP4_FTYP) - len(mdat)))
                    self.wfile.flush()
                except OSError:
                    return
                stopping.wait(60)

            def _unvalidated(self, answer: int) -> None:
                """
                A link without validators (no ETag, no Last-Modified) whose file is replaced while it is read: the
                first answer is the first file, cut in the middle; every later one (a Range honoured) the last file.
                """
                data = files[0] if answer == 1 else files[-1]
                wanted = self.headers.get("Range")
                start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
                self.send_response(206 if wanted else 200)
                if wanted:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[start : len(data) // 2] if answer == 1 else data[start:])

            def _echo(self) -> None:
                """
                A server that repeats the request's address in its headers: in ``Content-Range`` (``/echo-range``),
                ``Content-Encoding`` (``/echo-encoding``), or in the ``ETag`` of the answer to a resumption, the first
                answer being cut (``/echo-etag``).
                """
                head = MP4_FTYP + b"\x00\x00\x03\xe8free"
                if self.path.startswith("/echo-encoding"):
                    self.send_response(200)
                    self.send_header("Content-Encoding", f"gzip; {self.path}")
                    self.send_header("Content-Length", "10")
                    self.end_headers()
                    self.wfile.write(head[:10])
                    return
                if self.path.startswith("/echo-range"):
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-9/1000; {self.path}")
                    self.send_header("Content-Length", "10")
                    self.end_headers()
                    self.wfile.write(head[:10])
                    return
                resumed = "Range" in self.headers
                self.send_response(206 if resumed else 200)
                self.send_header("ETag", f'"{self.path}"' if resumed else '"v1"')
                if resumed:
                    self.send_header("Content-Range", f"bytes {len(head)}-1023/1024")
                self.send_header("Content-Length", str(1024 - len(head) if resumed else 1024))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"\x00" * (1024 - len(head)) if resumed else head)  # the first answer is cut

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_port}"

    def redirect_to(self, target: str) -> str:
        return f"{self.url}/to?Signature={SIGNATURE}&u={quote(target, safe='')}"

    def __enter__(self) -> LinkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def links() -> Iterator[LinkServer]:
    with LinkServer() as server:
        yield server


def _generate() -> str:
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": "a kite over a beach"}, "parameters": {"size": "832*480"}}
    return hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30).task_id


def _answer_with_link(sim: Any, task_id: str, link: str) -> None:
    """The next task read answers as DashScope did, but with ``link`` as the video_url."""
    answer = requests.get(
        f"{sim.base_url}/tasks/{task_id}", headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=10
    ).json()
    answer["output"]["video_url"] = link
    sim.inject_fault("answer", route="get_task", status=200, body=answer, processed=False)


def _operator(folder: Path, task_id: str, **kwargs: Any) -> WanVideoToStorageOperator:
    kwargs.setdefault("download_retry_delay", 0.01)
    kwargs.setdefault("max_download_attempts", 2)
    return WanVideoToStorageOperator(
        task_id="store",
        wan_task_id=task_id,
        model=MODEL,
        destination=f"file://{folder}/{{wan_task_id}}.mp4",
        **kwargs,
    )


def _fails_clearly(folder: Path, task_id: str, error: type[Exception], words: str, **kwargs: Any) -> Exception:
    with pytest.raises(error, match=words) as caught:
        _operator(folder, task_id, **kwargs).execute({})
    text = f"{caught.value} {caught.value!r} {json.dumps(getattr(caught.value, 'to_dict', dict)(), default=str)}"
    # in any case: a header value lower-cased is the signature all the same
    assert SIGNATURE.lower() not in text.lower(), "the signed link leaked into the error"
    assert not folder.exists() or list(folder.iterdir()) == [], "something was kept"
    return caught.value


def test_a_redirect_loop_is_a_clear_error_after_a_few_hops(wan_connection: Any, links: LinkServer, tmp_path: Path):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}/loop?Signature={SIGNATURE}")
    _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "redirect")
    # a handful of hops per request, not requests' 30, and no resumption of a loop
    assert len(links.paths) <= 12


@pytest.mark.parametrize(
    "target",
    [
        f"ftp://127.0.0.1/v.mp4?Expires=1&Signature={SIGNATURE}",
        f"http://127.0.0.1:99999999/v.mp4?Signature={SIGNATURE}",
        f"file:///etc/passwd?Signature={SIGNATURE}",
    ],
    ids=["ftp", "impossible-port", "file"],
)
def test_a_redirect_to_a_link_that_cannot_be_fetched_never_shows_it(
    wan_connection: Any, links: LinkServer, tmp_path: Path, target: str
):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, links.redirect_to(target))
    _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "cannot be fetched|not an http")


@pytest.mark.parametrize(
    "link",
    [f"ftp://127.0.0.1/v.mp4?Expires=1&Signature={SIGNATURE}", f"http://[::1/v.mp4?Signature={SIGNATURE}"],
    ids=["ftp", "unparsable"],
)
def test_a_video_url_that_is_no_http_link_never_shows_it(wan_connection: Any, tmp_path: Path, link: str):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, link)
    _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "cannot be fetched|not an http")


def test_a_redirect_to_the_video_on_another_host_lands_whole(wan_connection: Any, links: LinkServer, tmp_path: Path):
    task_id = _generate()
    real = WanHook().get_task(task_id).video_url
    assert real
    served = requests.get(real, timeout=30).content
    # another host name for the simulator: the link's server sends the download elsewhere, as a CDN may
    _answer_with_link(wan_connection, task_id, links.redirect_to(real.replace("127.0.0.1", "localhost")))
    result = _operator(tmp_path, task_id).execute({})
    assert (tmp_path / f"{task_id}.mp4").read_bytes() == served
    assert result["size"] == len(served)
    assert len(links.paths) == 1


def test_a_refused_link_answer_quoting_a_signed_url_is_not_repeated(wan_connection: Any, tmp_path: Path):
    task_id = _generate()
    message = f"Request has expired: https://x.oss.example.com/v.mp4?OSSAccessKeyId=LTAI&Signature={SIGNATURE}"
    wan_connection.inject_fault("error", route="download", status=403, code="AccessDenied", message=message)
    # the task ended just now: a refusal, retryable, not an expiry (whatever OSS's words)
    error = _fails_clearly(tmp_path / "out", task_id, WanRetryableError, "AccessDenied")
    assert not isinstance(error, WanResultExpiredError)
    # what OSS said stays readable, without its link's query
    assert "Request has expired" in str(error)


def test_a_redirect_from_https_down_to_plain_http_is_not_followed(
    wan_connection: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    certificate = self_signed_certificate(tmp_path, ip_address="127.0.0.1")
    # the worker trusts the link's certificate the way users add a CA: requests reads REQUESTS_CA_BUNDLE
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    task_id = _generate()
    real = WanHook().get_task(task_id).video_url
    assert real
    assert real.startswith("http://")
    before = int(wan_connection.stats()["requests"].get("download", 0))
    with LinkServer(certificate) as secure:
        _answer_with_link(wan_connection, task_id, secure.redirect_to(real))
        _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "https to plain http")
        assert len(secure.paths) == 1
    # the video was never fetched over plain http
    assert int(wan_connection.stats()["requests"].get("download", 0)) == before


@pytest.mark.parametrize("path", ["/endless", "/endless?length"], ids=["no-length", "a-terabyte-announced"])
def test_a_body_that_is_no_mp4_is_refused_at_its_first_bytes_not_streamed_to_its_end(
    wan_connection: Any, links: LinkServer, tmp_path: Path, path: str
):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}{path}")
    # a cap above the terabyte: the walk over the first bytes must tell, not max_video_bytes (test_size_cap)
    _fails_clearly(
        tmp_path / "out",
        task_id,
        WanTransferIntegrityError,
        "not a whole MP4",
        download_timeout=5.0,
        max_video_bytes=1 << 41,
    )
    # the first read showed it: not gigabytes into the store until the deadline
    assert sum(links.sent) < 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("link", "words"),
    [
        (f"http://169.254.169.254/latest/meta-data/iam/security-credentials/?Signature={SIGNATURE}", "link-local"),
        (f"http://10.255.255.1/v.mp4?Signature={SIGNATURE}", "private"),
    ],
    ids=["metadata-service", "private-network"],
)
def test_a_video_url_into_the_workers_network_is_not_fetched(
    wan_connection: Any, tmp_path: Path, link: str, words: str
):
    # SSRF: a hostile or mixed-up answer naming the cloud's metadata service or a private address was fetched with
    # the worker's network reach (and what came back would have been stored as the video)
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, link)
    error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, words)
    assert "Nothing was fetched" in str(error)


def test_a_redirect_into_the_workers_network_is_not_followed(wan_connection: Any, links: LinkServer, tmp_path: Path):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, links.redirect_to("http://169.254.169.254/latest/meta-data/"))
    _fails_clearly(tmp_path / "out", task_id, WanFinalError, "link-local")
    assert len(links.paths) == 1


@pytest.mark.parametrize(
    "path", ["/echo-range", "/echo-etag", "/echo-encoding"], ids=["content-range", "etag", "content-encoding"]
)
def test_header_values_the_link_echoes_never_reach_the_error_nor_the_log(
    wan_connection: Any, links: LinkServer, tmp_path: Path, path: str, capfd: pytest.CaptureFixture[str]
):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}{path}?Expires=1&Signature={SIGNATURE}")
    # three requests: a changed ETag is logged once before the copy starts again from byte 0
    words = "range|in 3 requests|Content-Encoding"
    _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, words, max_download_attempts=3)
    out, err = capfd.readouterr()
    if path == "/echo-etag":
        assert "starting the copy again from byte 0" in out + err
    assert SIGNATURE.lower() not in (out + err).lower()


def test_a_link_without_validators_is_never_resumed_into_another_file(
    wan_connection: Any, links: LinkServer, tmp_path: Path
):
    # with no ETag nor Last-Modified, nothing says a Range answer continues the file the first bytes came from: the
    # file replaced meanwhile (same length, one byte changed) was stitched onto them and stored as a whole video
    task_id = _generate()
    video = requests.get(WanHook().get_task(task_id).video_url or "", timeout=30).content
    # the new file differs in both halves: bytes of the old before the cut and of the new after it are neither
    replaced = bytearray(video)
    for at in (len(video) // 4, len(video) * 3 // 4):
        replaced[at] ^= 1
    links.files.extend([video, bytes(replaced)])
    _answer_with_link(wan_connection, task_id, f"{links.url}/unvalidated?Expires=1&Signature={SIGNATURE}")
    result = _operator(tmp_path / "out", task_id, max_download_attempts=3).execute({})
    # the copy started again from byte 0 and kept one file whole: the one the link serves now
    assert (tmp_path / "out" / f"{task_id}.mp4").read_bytes() == replaced
    assert result["size"] == len(replaced)


def test_a_first_answer_refused_is_not_called_a_resumption(wan_connection: Any, links: LinkServer, tmp_path: Path):
    # nothing had arrived: 'Cannot resume the download ... at byte 0' described a resumption that never was
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}/echo-encoding?Expires=1&Signature={SIGNATURE}")
    error = _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "Content-Encoding")
    assert str(error).startswith(f"Cannot download DashScope task {task_id}'s video: the link answered with"), error


def test_a_content_length_that_is_no_number_is_no_length_not_a_python_error(
    wan_connection: Any, links: LinkServer, tmp_path: Path
):
    # the body's end, with no length that can be read, proves nothing: resumed, then given up in our words (it was
    # a ValueError quoting int()'s complaint)
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}/superscript-length?Expires=1&Signature={SIGNATURE}")
    _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "could not be completed in 2 requests")


def test_slow_redirects_do_not_hold_the_worker_past_download_timeout(
    wan_connection: Any, links: LinkServer, tmp_path: Path
):
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}/slowloop?Signature={SIGNATURE}")
    started = time.monotonic()
    _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "within 2 s", download_timeout=2.0)
    # a wall-clock total: not six hops of 1.5 s each
    assert time.monotonic() - started < 5.0
