"""
The download engine: the bytes behind a signed DashScope link, streamed, resumed, and proven whole.

:class:`ResumableDownload` yields the video's bytes once each, in order, across dropped connections (HTTP Range
requests). The iteration ends normally only when the download is proven whole:

* its length is known (``Content-Length`` of a 200, or the total of a ``Content-Range``; when the server announced
  none, one more Range request past the last byte asks for it) and every one of those bytes arrived;
* the file did not change between two requests: every answer carries the validators (``ETag``, ``Last-Modified``)
  of the first one, else :class:`SourceChangedError` tells the caller to start again from byte 0; a link that sends
  neither is never resumed (nor asked for its length past the last byte): its bytes start again from byte 0;
* its top-level MP4 boxes add up to that length, with ``ftyp`` and ``moov`` present
  (:mod:`~airflow_provider_wan.transfers.mp4`).

A size cap (``max_bytes``) stops a link that would fill the store: an answer announcing more (``Content-Length``,
``Content-Range``) is refused before its first byte is yielded, a body announcing nothing once its bytes pass the cap.

It also computes the MD5 (and CRC32C when ``google-crc32c`` is installed) of what it yielded, which the sinks
compare with what the store kept. A sink writes what it is given and makes it visible only after the iteration ended
normally: a failure anywhere (including here) leaves nothing behind.

``requests`` is imported inside the methods: DAG files import the operators that import this module.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_wan.create_record import TASK_RETENTION_SECONDS
from airflow_provider_wan.exceptions import (
    WanFinalError,
    WanResultExpiredError,
    WanRetryableError,
    WanTransferIntegrityError,
)
from airflow_provider_wan.hooks.classify import refused_proxy_certificate
from airflow_provider_wan.redact import clean_text, url_host
from airflow_provider_wan.transfers.mp4 import Mp4BoxWalker

if TYPE_CHECKING:
    import requests

__all__ = ["READ_SIZE", "ContentRange", "Progress", "ResumableDownload", "SourceChangedError"]

KiB = 1024
MiB = 1024 * KiB
#: one read from the HTTP response; small next to a sink's part size, large enough to keep syscalls few
READ_SIZE = 1 * MiB
#: a resumption never waits longer than this, whatever the backoff says
MAX_RETRY_DELAY = 30.0
#: redirects followed per request (a CDN may send one or two; a loop must not cost 30 requests per attempt)
MAX_REDIRECTS = 5
#: how far the worker's clock may be ahead of DashScope's: a link refused (401/403/404/410) this long past the 24 h
#: DashScope keeps a video after its task's end_time is still not called expired (a retry is free, paying twice is not)
CLOCK_SKEW_SECONDS = 600


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range``: ``bytes START-END/TOTAL`` or ``bytes */TOTAL`` (a 416); TOTAL ``*`` is None."""

    start: int | None
    end: int | None
    total: int | None

    @classmethod
    def parse(cls, value: str | None) -> ContentRange | None:
        match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
        if match is None:
            return None
        start, end, total = match.groups()
        return cls(
            None if start is None else int(start),
            None if end is None else int(end),
            None if total == "*" else int(total),
        )


class SourceChangedError(WanTransferIntegrityError):
    """The file behind the link changed between two requests: what was received cannot be continued."""


class _Dropped(Exception):
    """A download attempt ended early (or without proving its end) in a way a Range request may recover from."""


class Progress:
    """Throttled progress lines: at most one every ``interval`` seconds, plus a summary."""

    def __init__(self, log: Any, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.last = self.started

    def update(self, done: int, total: int | None) -> None:
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        if total:
            self.log.info(
                "Copied %.1f of %.1f MiB (%.0f%%), %.1f MB/s",
                done / MiB,
                total / MiB,
                100.0 * done / total,
                done / elapsed / 1e6,
            )
        else:
            self.log.info("Copied %.1f MiB, %.1f MB/s", done / MiB, done / elapsed / 1e6)

    def rate(self, done: int) -> tuple[float, float]:
        """Elapsed seconds and MB/s since the start."""
        elapsed = max(self.clock() - self.started, 1e-9)
        return elapsed, done / elapsed / 1e6


class ResumableDownload:
    """
    The bytes behind a signed link, as an iterator of chunks that survives dropped connections.

    A drop (reset, timeout, a body shorter than announced, a 5xx/429 answer, an end whose length nobody announced)
    is followed by a request for ``Range: bytes=<received>-`` (with ``If-Range`` when the first answer carried a
    validator). An answer whose validators differ from the first one's raises :class:`SourceChangedError`: call
    :meth:`restart` and iterate again (the sink must drop what it had). The iteration ends normally only when the
    download is proven whole (see the module's docstring).

    :param session: a ``requests.Session``; the operators pass a
        :func:`~airflow_provider_wan.hooks.guard.guarded_session`, whose connections refuse addresses the link
        rule refuses (a :class:`~airflow_provider_wan.hooks.guard.RefusedAddress` becomes a final error), and whose
        ``https://`` proxy's own refused certificate is told from the link's host's (both final errors)
    :param url: the signed link; never logged, never put in an error message
    :param task_id: DashScope task id, for messages
    :param timeout: ``(connect, read)`` seconds of one HTTP request
    :param max_attempts: requests in all, the first and every restart included (default 5); then
        :class:`~airflow_provider_wan.exceptions.WanTransferIntegrityError`
    :param retry_delay: seconds before the first resumption, doubled after each further drop (default 1.0), at most
        30 s
    :param deadline: seconds the whole download may take, wall clock (default None: no limit); a server dripping
        bytes cannot hold the worker past it
    :param read_size: bytes per read from the response (default 1 MiB)
    :param verify_mp4: require a complete MP4 box structure (default True)
    :param refuse: why a link (the first, or a redirect) must not be fetched, or None when it may
        (:func:`~airflow_provider_wan.hooks.wan.link_problem`: the link as written; the address a host name
        leads to is the session's to judge); a refused link is a final error (default: none refused beyond
        non-http(s) links)
    :param max_bytes: the most bytes the video may have (default None: no cap); an answer announcing more is refused
        before any of its bytes is yielded, a body without an announced length once it passes the cap: a final
        :class:`~airflow_provider_wan.exceptions.WanFinalError` (the same link would do it again)
    :param ended_at: the task's ``end_time`` as DashScope reported it (Unix seconds), None when unknown. A link
        refused (401, 403, 404, 410) within the 24 hours DashScope keeps a video after that is no expiry: a
        retryable :class:`~airflow_provider_wan.exceptions.WanRetryableError` (a proxy, a firewall, the worker's
        clock); later, or with no end_time, the final
        :class:`~airflow_provider_wan.exceptions.WanResultExpiredError`
    :param wall_clock: Unix seconds now, compared with ``ended_at`` (default ``time.time``)
    """

    def __init__(
        self,
        session: requests.Session,
        url: str,
        *,
        task_id: str,
        log: Any,
        timeout: tuple[float, float] = (10.0, 60.0),
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        deadline: float | None = None,
        read_size: int = READ_SIZE,
        verify_mp4: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        refuse: Callable[[str], str | None] | None = None,
        max_bytes: int | None = None,
        ended_at: float | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.ended_at = ended_at
        self._wall_clock = wall_clock
        self.max_bytes = max_bytes
        self.url = url
        self.refuse = refuse
        self.task_id = task_id
        self.log = log
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.retry_delay = retry_delay
        self.read_size = read_size
        self.verify_mp4 = verify_mp4
        self._sleep = sleep
        self._clock = clock
        self._ends_at = None if deadline is None else clock() + deadline
        self.deadline = deadline
        #: requests sent (restarts included), how many were resumptions, and how many restarts from byte 0
        self.attempts = 0
        self.resumptions = 0
        self.restarts = 0
        self.restart()
        self.restarts = 0

    def restart(self) -> None:
        """Forget every byte received: the next iteration starts from byte 0 (after a :class:`SourceChangedError`)."""
        self.restarts += 1
        #: bytes yielded so far
        self.received = 0
        #: the video's size, once an answer announced it
        self.total: int | None = None
        #: the first answer's validators (ETag, Last-Modified); every later answer must carry the same
        self.validators: tuple[str | None, str | None] | None = None
        self._walker = Mp4BoxWalker()
        self._md5 = hashlib.md5()
        self._crc32c: Any = None
        try:
            import google_crc32c

            self._crc32c = google_crc32c.Checksum()
        except ImportError:  # pragma: no cover - installed with google-cloud-storage
            pass

    @property
    def etag(self) -> str | None:
        return self.validators[0] if self.validators else None

    def md5(self) -> bytes:
        """MD5 of the bytes yielded."""
        return self._md5.digest()

    def crc32c(self) -> bytes | None:
        """CRC32C (big-endian, 4 bytes) of the bytes yielded; None without ``google-crc32c``."""
        return None if self._crc32c is None else bytes(self._crc32c.digest())

    def may_restart(self) -> bool:
        """Whether a restart from byte 0 still fits in ``max_attempts`` requests."""
        return self.attempts < self.max_attempts

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.attempts += 1
            try:
                yield from self._attempt()
            except _Dropped as drop:
                if self.attempts >= self.max_attempts:
                    raise WanTransferIntegrityError(
                        f"The download of DashScope task {self.task_id}'s video could not be completed in "
                        f"{self.attempts} requests (last: {drop}); stopped at byte {self.received} of "
                        f"{self._total_text()}. Nothing was kept; raise max_download_attempts if the network is "
                        "this unreliable",
                        task_id=self.task_id,
                    ) from None
                if self.received and not any(self.validators or ()):
                    # nothing would tell a Range answer of another file (replaced meanwhile) from the rest of this one
                    raise SourceChangedError(
                        f"DashScope task {self.task_id}'s video link answered without ETag or Last-Modified, so the "
                        f"{self.received} bytes received cannot be continued ({drop})",
                        task_id=self.task_id,
                    ) from None
                delay = min(MAX_RETRY_DELAY, self.retry_delay * 2 ** (self.attempts - 1))
                self._check_deadline(delay)
                self.log.warning(
                    "Download of task %s's video ended at byte %d of %s (%s); resuming with a Range request "
                    "(attempt %d/%d) in %.1f s",
                    self.task_id,
                    self.received,
                    self._total_text(),
                    drop,
                    self.attempts + 1,
                    self.max_attempts,
                    delay,
                )
                self._sleep(delay)
                self.resumptions += 1
                continue
            self._prove_whole()
            return

    def _prove_whole(self) -> None:
        if self.total is None or self.received != self.total:  # pragma: no cover - _attempt never returns so
            raise self._unproven(f"{self.received} bytes arrived of {self._total_text()}")
        if self.received == 0:
            raise self._unproven("the video is empty (0 bytes)")
        if self.verify_mp4:
            problem = self._walker.problem(self.received)
            if problem is not None:
                raise self._unproven(f"its {self.received} bytes are not a complete MP4 ({problem})")

    def _unproven(self, why: str) -> WanTransferIntegrityError:
        return WanTransferIntegrityError(
            f"DashScope task {self.task_id}'s video could not be proven whole: {why}. Nothing was kept",
            task_id=self.task_id,
        )

    def _total_text(self) -> str:
        return str(self.total) if self.total is not None else "an unannounced total"

    def _check_deadline(self, margin: float = 0.0) -> None:
        if self._ends_at is not None and self._clock() + margin > self._ends_at:
            raise WanTransferIntegrityError(
                f"The download of DashScope task {self.task_id}'s video did not finish within {self.deadline:g} s "
                f"(at byte {self.received} of {self._total_text()}, {self.attempts} request(s)); nothing was kept. "
                "A retry starts again from a fresh link; raise download_timeout if the network is this slow",
                task_id=self.task_id,
            )

    def _impossible(self, why: str) -> WanTransferIntegrityError:
        video = f"DashScope task {self.task_id}'s video"
        # a resumption only once bytes arrived: a refused first answer is not one
        what = f"resume the download of {video} at byte {self.received}" if self.received else f"download {video}"
        return WanTransferIntegrityError(f"Cannot {what}: {why}. Nothing was kept", task_id=self.task_id)

    def _too_big(self, what: str) -> WanFinalError:
        return WanFinalError(
            f"DashScope task {self.task_id}'s video link {what}, over max_video_bytes ({self.max_bytes} bytes); "
            "nothing was kept. A Wan video is tens of MB: this link serves something else, or a video larger than "
            "the cap; if the video really is that large, give the transfer operator a higher max_video_bytes",
            task_id=self.task_id,
        )

    def _accept(self, piece: bytes) -> bytes:
        if self.max_bytes is not None and self.received + len(piece) > self.max_bytes:
            # no length announced (a known one was checked against the cap before the first byte): the bytes tell
            raise self._too_big(f"sent more than {self.max_bytes} bytes without announcing the video's length")
        self.received += len(piece)
        self._md5.update(piece)
        if self._crc32c is not None:
            self._crc32c.update(piece)
        self._walker.feed(piece)
        if self.verify_mp4:
            # a web page, an XML error or a box past the end shows in the first bytes: not streamed into the store
            # for as long as it lasts (without end, or a terabyte announced)
            problem = self._walker.broken(self.total)
            if problem is not None:
                raise self._unproven(f"its first {self.received} bytes show it is not a whole MP4: {problem}")
        return piece

    def _attempt(self) -> Iterator[bytes]:
        """One request; returns normally only when ``total`` is known and every byte of it arrived."""
        import requests
        import urllib3

        self._check_deadline()
        # identity: a compressed body would not match Content-Length nor the ranges counted in stored bytes
        headers = {"Accept-Encoding": "identity"}
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
            if self.validators and (self.validators[0] or self.validators[1]):
                etag, modified = self.validators
                headers["If-Range"] = etag if etag and not etag.startswith("W/") else (modified or etag or "")
        response = self._get(headers)
        with response:
            plan = self._check(response)
            if plan is None:
                return
            skip, end = plan
            raw = response.raw
            try:
                while self.received < end:
                    self._check_deadline()
                    # read1 returns what has arrived (at most read_size): bytes received before a drop are never
                    # lost inside a half-filled read, so the Range request asks for exactly the missing part
                    piece = raw.read1(self.read_size, decode_content=False)
                    if not piece:
                        break
                    if skip:
                        # the server ignored Range: read past what we already have
                        if len(piece) <= skip:
                            skip -= len(piece)
                            continue
                        piece, skip = piece[skip:], 0
                    if self.received + len(piece) > end:
                        raise self._impossible(f"the answer carried bytes past byte {end}, where it said it ends")
                    yield self._accept(piece)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                if self.total is not None and self.received == self.total:
                    return  # the connection broke after the last byte: nothing is missing
                raise _Dropped(f"{type(exc).__name__} while reading the body") from None
        if self.total is None:
            # a clean end, but nobody said how long the video is: the next request (Range past the end) asks
            raise _Dropped(f"the answer ended after byte {self.received} without announcing the video's length")
        if self.received < self.total:
            raise _Dropped(f"the answer ended after byte {self.received} of {self.total}")

    def _request_timeout(self) -> tuple[float, float]:
        """``(connect, read)`` seconds of the next request: never longer than the time left before the deadline."""
        if self._ends_at is None:
            return self.timeout
        left = max(self._ends_at - self._clock(), 0.1)
        return min(self.timeout[0], left), min(self.timeout[1], left)

    def _get(self, headers: dict[str, str]) -> requests.Response:
        """
        The answer of the link, redirects followed here (at most :data:`MAX_REDIRECTS`, http(s) only, never from
        https down to plain http): ``requests`` would follow 30, and its errors about a link quote the link.
        """
        import requests

        from airflow_provider_wan.hooks.guard import (
            CERTIFICATE_REFUSED,
            RefusedAddress,
            certificate_refused,
            refusing_proxy,
        )

        url = self.url
        for hop in range(MAX_REDIRECTS + 1):
            if hop:
                self._check_deadline()  # slow hops count against the download's wall-clock total too
            timeout = self._request_timeout()
            scheme = _scheme(url)
            if scheme not in ("http", "https"):
                raise self._impossible(f"the link (or a redirect) is not an http(s) URL ({scheme or 'unparsable'})")
            why = self.refuse(url) if self.refuse is not None else None
            if why:
                raise self._refused(url, f"{why}. Nothing was fetched or kept")
            try:
                response = self.session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
            except RefusedAddress as refused:
                # a guarded session's connection reached an address the rule refuses (hooks/guard.py)
                why = f"{refused.why}. The connection was closed before the request was sent; nothing was kept"
                raise self._refused(url, why) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                # an SSLError, a ProxyError among them; our words only: a client exception's text may carry the link.
                # A refused certificate is final: the same certificate would be refused again
                proxy = refusing_proxy(exc, url)
                if proxy is not None:
                    raise self._proxy_refused(url, proxy) from None
                if certificate_refused(exc):
                    raise self._refused(url, f"{CERTIFICATE_REFUSED}. Nothing was fetched or kept") from None
                raise _Dropped(f"{type(exc).__name__} before an answer") from None
            except (requests.RequestException, ValueError) as exc:
                raise self._impossible(f"the link (or a redirect) cannot be fetched ({type(exc).__name__})") from None
            if not response.is_redirect:
                return response
            location = response.headers.get("Location", "")
            response.close()
            try:
                target = urljoin(url, location)
            except ValueError:
                target = ""  # refused as unparsable on the next turn
            if scheme == "https" and _scheme(target) == "http":
                raise self._impossible(f"the link redirected from https to plain http ({url_host(target)})")
            url = target
        raise self._impossible(f"the link redirected more than {MAX_REDIRECTS} times")

    def _refused(self, url: str, why: str) -> WanFinalError:
        # the host only: the link's query is its signature
        return WanFinalError(
            f"Refused to fetch the video of DashScope task {self.task_id} from {url_host(url)} (its video_url or a "
            f"redirect of it): {why}",
            task_id=self.task_id,
        )

    def _proxy_refused(self, url: str, proxy: str) -> WanFinalError:
        # the https:// proxy's own certificate: nothing was sent to it (no CONNECT, no login), the link not asked for
        doing = (
            f"fetching the video of DashScope task {self.task_id} from {url_host(url)} (its video_url or a redirect "
            "of it)"
        )
        return WanFinalError(
            f"{refused_proxy_certificate(proxy, doing)} The video link was not read; nothing was kept",
            task_id=self.task_id,
        )

    def _link_refused(
        self, response: requests.Response, answer: str, status: int, code: str | None
    ) -> WanRetryableError | WanResultExpiredError:
        """
        The error of a link answering 401, 403, 404 or 410: an expiry only when DashScope's own end_time says the
        task ended more than 24 hours ago (or nobody knows when); before that the video is still kept, and something
        between the worker and the link refused it.
        """
        retention = f"{TASK_RETENTION_SECONDS // 3600} hours"
        age = None if self.ended_at is None else self._wall_clock() - self.ended_at
        if age is None or age >= TASK_RETENTION_SECONDS + CLOCK_SKEW_SECONDS:
            return WanResultExpiredError(
                f"The video of DashScope task {self.task_id} can no longer be downloaded ({answer}). DashScope keeps "
                f"a video for {retention} after the task ends and then deletes it; the video must be generated again",
                http_status=status,
                code=code,
                task_id=self.task_id,
            )
        minutes = max(0, round(age / 60))
        ended = "less than a minute" if minutes == 0 else f"{minutes} minute{'s' if minutes != 1 else ''}"
        # the host only: the link's query is its signature
        host = url_host(response.url)
        return WanRetryableError(
            f"The video link of DashScope task {self.task_id} was refused by {host} ({answer}). This is not an "
            f"expiry: the task ended {ended} ago and DashScope keeps its video for {retention} after the end, so the "
            "video still exists and must NOT be generated again. Nothing was kept; a retry reads a fresh link from "
            f"DashScope. If the refusals go on, check what stands between this worker and {host} (a proxy or "
            "firewall answering for it) and this worker's clock (a signed link is refused when the clock is off)",
            http_status=status,
            code=code,
            task_id=self.task_id,
        )

    def _check(self, response: requests.Response) -> tuple[int, int] | None:
        """
        Validate an answer; the first one sets ``total`` and the validators.

        :return: ``(bytes of the body to skip (the server ignored Range), offset where this answer ends)``, or None:
            nothing left to read (the length is proven by a 416 past the last byte)
        """
        status = response.status_code
        if status in (401, 403, 404, 410):
            code, message = _oss_error(response)
            answer = f"HTTP {status}{' ' + code if code else ''}{': ' + message if message else ''}"
            raise self._link_refused(response, answer, status, code)
        if status == 416:
            content_range = ContentRange.parse(response.headers.get("Content-Range"))
            announced = content_range.total if content_range else None
            if self.received and announced == self.received and (self.total in (None, announced)):
                self._same_file(response)
                self.total = announced  # a Range past the last byte: the length is proven
                return None
            raise self._impossible(f"the link answered 416 for a range from byte {self.received}")
        if status in (408, 429) or status >= 500:
            raise _Dropped(f"HTTP {status}")
        if status not in (200, 206):
            raise self._impossible(f"the link answered HTTP {status}")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # the bytes stored must be the video itself, and Content-Length must count them
            shown = _header_text(response, "Content-Encoding")
            raise self._impossible(f"the link answered with Content-Encoding {shown!r} despite identity asked")
        length = _int_header(response, "Content-Length")
        if status == 206:
            content_range = ContentRange.parse(response.headers.get("Content-Range"))
            if content_range is None or content_range.start != self.received or content_range.end is None:
                raise self._impossible(f"the server sent the range {_header_text(response, 'Content-Range')!r}")
            total, skip, end = content_range.total, 0, content_range.end + 1
            if length is not None and length != end - self.received:
                raise self._impossible("the answer's Content-Length does not match its Content-Range")
        else:
            total, skip = length, self.received
            end = length if length is not None else 1 << 62
        if self.validators is None:
            # nothing kept yet (first request, or a restart): this answer sets the terms
            self.validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
        else:
            self._same_file(response)
        if self.total is None:
            self.total = total
        elif total is not None and total != self.total:
            raise SourceChangedError(
                f"DashScope task {self.task_id}'s video changed size between two requests ({self.total} then "
                f"{total} bytes)",
                task_id=self.task_id,
            )
        if self.total is not None and end > self.total:
            end = self.total
        # what the answer promises to send: its total, else the end of its range (a 200 without length: unknown)
        announced = self.total if self.total is not None else (end if length is not None or status == 206 else None)
        if self.max_bytes is not None and announced is not None and announced > self.max_bytes:
            raise self._too_big(f"announced {announced} bytes")
        return skip, end

    def _same_file(self, response: requests.Response) -> None:
        """Raise :class:`SourceChangedError` unless ``response`` carries the first answer's validators."""
        assert self.validators is not None
        now = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
        for name, before, after in zip(("ETag", "Last-Modified"), self.validators, now, strict=True):
            if before != after:
                raise SourceChangedError(
                    f"DashScope task {self.task_id}'s video changed between two requests ({name} "
                    f"{clean_text(before, 80) or 'absent'} then {clean_text(after, 80) or 'absent'}): the "
                    f"{self.received} bytes received cannot be continued",
                    task_id=self.task_id,
                )


def _scheme(url: str) -> str:
    """The scheme of ``url`` (lower case; only letters, digits, ``+-.``), or "" when it does not parse."""
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:
        return ""


def _header_text(response: requests.Response, name: str) -> str | None:
    """A header's value fit for our messages: a server may echo the request (and its signed link) in any header."""
    return clean_text(response.headers.get(name), 80)


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name) or ""
    # ASCII digits only: str.isdigit() takes Latin-1's superscripts too, which int() refuses
    return int(value) if value.isascii() and value.isdigit() else None


def _oss_error(response: requests.Response) -> tuple[str | None, str | None]:
    """Code and Message of an OSS-style XML error body; only those two (the body may echo the signature)."""
    try:
        text = response.raw.read(4096, decode_content=True).decode("utf-8", errors="replace")
    except Exception:
        return None, None
    code = re.search(r"<Code>([^<]{1,100})</Code>", text)
    message = re.search(r"<Message>([^<]{1,300})</Message>", text)
    # server text: a message may quote a signed link (or carry control characters into the log)
    return (clean_text(code.group(1), 100) if code else None), (clean_text(message.group(1)) if message else None)
