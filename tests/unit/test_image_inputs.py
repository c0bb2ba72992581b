"""
Media inputs (issue 10): only regular files are read, never more than the limit + 1 bytes, whatever ``st_size``
says; ``data:`` URIs get the checks files get (size, base64, format, declared MIME type, sides).
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.media import check_local_media, measure_file, open_regular_file
from airflow_provider_wan.schema import LEGACY_IMAGE
from tests.foundation.images import png_bytes

MODEL = "wan2.5-i2v-preview"


def _refused(field: str, value: str) -> str:
    """Check ``{field: value}`` in a thread, so a read that blocks fails the test after 10 s instead of hanging it."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = check_local_media({field: value}, MODEL)
        except WanInvalidInputError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the read blocked"
    assert "error" in outcome, f"not refused: {outcome.get('value')!r}"
    return str(outcome["error"])


@pytest.fixture
def special(tmp_path: Path):
    def make(kind: str) -> Path:
        if kind in ("/dev/zero", "/dev/urandom"):
            return Path(kind)
        target = tmp_path / "frame.png"
        if kind == "symlink-to-zero":
            target.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "directory":
            target.mkdir()
        else:
            raise AssertionError(kind)
        return target

    return make


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("/dev/zero", "a character device"),
        ("/dev/urandom", "a character device"),
        ("symlink-to-zero", "a character device"),
        ("fifo", "a named pipe (FIFO)"),
        ("directory", "a directory"),
    ],
)
def test_only_regular_files_are_read(special, kind, what):
    message = _refused("img_url", str(special(kind)))
    assert message.startswith("img_url: ")
    assert what in message
    assert "only regular files are read" in message
    assert MODEL in message
    assert "JPEG, PNG, BMP, WEBP" in message


def test_a_symlink_to_a_regular_image_is_read(tmp_path):
    image = tmp_path / "real.png"
    image.write_bytes(png_bytes(400, 400))
    link = tmp_path / "link.png"
    link.symlink_to(image)
    [media] = check_local_media({"img_url": str(link)}, MODEL)
    assert media.size == image.stat().st_size
    assert media.format == "PNG"


def test_reads_stop_at_the_limit_plus_one_byte(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(400, 400) + b"\0" * 4096)
    size, _, head = measure_file(lambda: open_regular_file(path), limit=10_000)
    assert size == path.stat().st_size
    assert head.startswith(b"\x89PNG")
    size, _, _ = measure_file(lambda: open_regular_file(path), limit=1000)
    assert size == 1001


def test_a_file_whose_st_size_is_zero_is_measured_by_its_bytes():
    # /proc files are regular files reporting st_size 0: the read counts bytes, not st_size
    assert os.stat("/proc/self/status").st_size == 0
    size, _, head = measure_file(lambda: open_regular_file(Path("/proc/self/status")), limit=LEGACY_IMAGE.max_bytes)
    assert size > 0
    assert head.startswith(b"Name:")
    assert "of an unknown format" in _refused("img_url", "/proc/self/status")


def test_oversized_file_is_refused_without_trusting_st_size(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(400, 400) + b"\0" * LEGACY_IMAGE.max_bytes)
    assert "larger than 10 MB" in _refused("img_url", str(path))


def _uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_a_good_data_uri_passes_unchanged():
    uri = _uri(png_bytes(400, 400))
    input_ = {"img_url": uri}
    assert check_local_media(input_, MODEL) == []
    assert input_ == {"img_url": uri}
    assert check_local_media({"img_url": _uri(png_bytes(400, 400), "image/PNG")}, MODEL) == []


@pytest.mark.parametrize(
    ("case", "uri", "fragment"),
    [
        ("oversized", "data:image/png;base64," + "A" * (LEGACY_IMAGE.max_bytes // 3 * 4 + 8192), "MB"),
        ("not-base64", "data:image/png;base64,@@@@not*base64", "not valid base64"),
        ("bad-padding", "data:image/png;base64,iVBORw0KGgo=A", "not valid base64"),
        ("no-base64-flag", "data:image/png,rawbytes", "data:image/<type>;base64,<data>"),
        ("no-comma", "data:image/png;base64", "data:image/<type>;base64,<data>"),
        ("garbage", _uri(b"\x00" * 64), "holds no image"),
        ("gif", _uri(b"GIF89a" + b"\0" * 64, "image/gif"), "holds GIF"),
        ("wrong-mime", _uri(png_bytes(400, 400), "image/jpeg"), "holds image/png"),
        ("too-small", _uri(png_bytes(100, 100)), "100x100 px"),
    ],
)
def test_bad_data_uris_are_refused(case, uri, fragment):
    message = _refused("img_url", uri)
    assert message.startswith("img_url: ")
    assert fragment in message, message
    assert MODEL in message
