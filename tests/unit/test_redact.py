"""The redaction helpers alone: signed URLs and keys, however they are written, never survive."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from airflow_provider_wan.redact import clean_text, redact_text, redact_url, url_host

KEY = "sk-" + "abcdef0123456789"
SIG = "c2lnbmF0dXJl"
SIGNED = f"https://b.oss-ap-southeast-1.aliyuncs.com/x/v.mp4?Expires=1700000000&OSSAccessKeyId=LTAI5t&Signature={SIG}"
S3 = f"https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=A&X-Amz-Credential=AKIA%2F1&X-Amz-Signature={SIG}"
AZURE = f"https://a.blob.core.windows.net/c/v.mp4?sv=2024&se=2026&sp=r&sig={SIG}"

ENCODINGS = {
    "plain": lambda u: f"failed to fetch {u} (403)",
    "percent-encoded": lambda u: f"url={quote(u, safe='')}",
    "twice percent-encoded": lambda u: f"url={quote(quote(u, safe=''), safe='')}",
    "JSON string": lambda u: json.dumps({"video_url": u}),
    "JSON escaped slashes": lambda u: json.dumps({"video_url": u}).replace("/", "\\/"),
    "JSON unicode escapes": lambda u: json.dumps({"u": u}).replace("&", "\\u0026").replace("?", "\\u003f"),
    "Location header": lambda u: f"Location: {u}",
    "query string alone": lambda u: u.split("?", 1)[1],
    "in a sentence, quoted": lambda u: f"the link '{u}' expired",
}


@pytest.mark.parametrize("url", [SIGNED, S3, AZURE], ids=["oss", "s3", "azure"])
@pytest.mark.parametrize("encoding", list(ENCODINGS), ids=list(ENCODINGS))
def test_signed_urls_are_redacted_however_encoded(url, encoding):
    text = redact_text(ENCODINGS[encoding](url))
    assert SIG not in text
    assert "LTAI5t" not in text


@pytest.mark.parametrize(
    "text",
    [f"Authorization: Bearer {KEY}", f"api_key={KEY}", f"the key {KEY} is wrong", f'{{"api_key": "{KEY}"}}'],
)
def test_keys_are_redacted(text):
    assert KEY not in redact_text(text)


def test_explicit_secrets_are_removed():
    assert "hunter2-long" not in redact_text("password hunter2-long given", "hunter2-long")


def test_our_own_words_survive():
    text = "No DashScope API key: set the password of the connection 'wan_default' (task_id=abc, code=InvalidParameter)"
    assert redact_text(text) == text


def test_redact_url_keeps_where_not_how():
    assert redact_url(SIGNED) == "https://b.oss-ap-southeast-1.aliyuncs.com/x/v.mp4"
    assert redact_url("https://user:pw@h.example:8443/p?q=1#f") == "https://h.example:8443/p"
    assert redact_url(None) is None
    assert SIG not in (redact_url(f"not a url {SIGNED}") or "")


def test_url_host():
    assert url_host(SIGNED) == "https://b.oss-ap-southeast-1.aliyuncs.com"
    assert url_host("http://[::1]:81/x") == "http://[::1]:81"
    assert url_host("") == url_host(None) == url_host("http://[bad") == "an unparsable URL"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (True, None), ([1], None), ({"a": 1}, None), (502, "502"), (1.5, "1.5"), ("  ", None)],
)
def test_clean_text_types(value, expected):
    assert clean_text(value) == expected


def test_clean_text_strips_control_characters_and_surrogates_and_caps_length():
    text = clean_text("a\x00b\x1bc\ud800d" + "x" * 10_000, limit=50)
    assert text is not None
    assert len(text) == 50
    assert text.startswith("a b c d")
    text.encode("utf-8")  # would raise on a lone surrogate
