"""
Download-side misbehaviours of the simulator's video links (fault kinds ``no_length``, ``short_range``,
``changing_body``, ``drip``): how one answer is shaped. The handler in ``server.py`` asks :func:`take_shape` once per
answer and applies what it returns; a ``truncate``/``reset`` fault of the same answer still cuts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.utils import formatdate

from ._state import SimulatorState

__all__ = ["AnswerShape", "changed_body", "etag_of", "http_date", "take_shape"]


@dataclass
class AnswerShape:
    """What the armed download faults do to one answer."""

    #: no Content-Length, no total in Content-Range (nor in a 416): the client cannot know the length
    hide_length: bool = False
    #: end the body cleanly (a complete chunked answer) after this many bytes; None: send the whole range
    clean_cut: int | None = None
    #: serve the changed file (other bytes, ETag, Last-Modified), the n-th change
    change: int = 0
    #: send ``drip_bytes`` every ``drip_delay`` seconds
    drip_delay: float = 0.0
    drip_bytes: int = 1024


def take_shape(state: SimulatorState, status: int) -> AnswerShape:
    """Consume the download-shape faults that apply to an answer of HTTP ``status`` (200, 206 or 416)."""
    shape = AnswerShape()
    fault = state.take_fault("download", ("no_length",))
    if fault is not None:
        shape.hide_length = True
        shape.clean_cut = fault.after_bytes or None
    if status == 206:
        fault = state.take_fault("download", ("short_range",))
        if fault is not None:
            shape.hide_length = True
            shape.clean_cut = max(fault.after_bytes, 1)
    # a Range answer from a file replaced since the download began (the server ignores If-Range, as some do)
    if status == 206 and state.take_fault("download", ("changing_body",)) is not None:
        shape.change = state.stats.faults_fired["changing_body"]
    if status != 416:
        fault = state.take_fault("download", ("drip",))
        if fault is not None:
            shape.drip_delay = fault.delay
            shape.drip_bytes = fault.after_bytes or 1024
    return shape


def changed_body(data: bytes, change: int) -> bytes:
    """The file after its ``change``-th change: same length, one byte different in the middle."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ (change % 255 + 1)]) + data[middle + 1 :]


def etag_of(data: bytes) -> str:
    """OSS's ETag of a simple upload: the MD5, upper-case hex, quoted."""
    return f'"{hashlib.md5(data).hexdigest().upper()}"'


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)
