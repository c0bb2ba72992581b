"""The simulator's temporary storage: upload policy, form upload host, oss:// resolution, expiry, the header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_wan.exceptions import WanInvalidRequestError, WanRetryableError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.media import check_local_media, upload_all
from tests.foundation.images import write_png

ENDPOINT = "services/aigc/video-generation/video-synthesis"


@pytest.fixture
def hook(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> WanHook:
    monkeypatch.setenv("AIRFLOW_CONN_WAN_UPLOADS", wan_simulator.connection_json())
    return WanHook(wan_conn_id="wan_uploads")


def _uploaded_body(hook: WanHook, image: Path) -> dict[str, Any]:
    body = {
        "model": "wan2.7-i2v",
        "input": {"prompt": "p", "media": [{"type": "first_frame", "url": str(image)}]},
        "parameters": {"resolution": "720P"},
    }
    upload_all(hook, "wan2.7-i2v", check_local_media(body["input"], "wan2.7-i2v"))
    return body


def test_upload_then_create_resolves_the_oss_url(hook, wan_simulator, tmp_path: Path) -> None:
    body = _uploaded_body(hook, write_png(tmp_path / "first.png"))
    url = body["input"]["media"][0]["url"]
    assert url.startswith("oss://dashscope-instant/")
    assert url.endswith("/first.png")
    task = hook.create_task(ENDPOINT, body)
    assert task.task_id
    stats = wan_simulator.stats()
    assert stats["uploads"] == {"policies": 1, "files": 1, "bytes": (tmp_path / "first.png").stat().st_size}


def test_create_without_the_resolve_header_is_refused(hook, wan_simulator, tmp_path: Path) -> None:
    body = _uploaded_body(hook, write_png(tmp_path / "first.png"))
    answer = requests.post(
        f"{wan_simulator.base_url}/{ENDPOINT}",
        json=body,
        headers={"Authorization": f"Bearer {wan_simulator.api_key}", "X-DashScope-Async": "enable"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert "X-DashScope-OssResourceResolve" in answer.json()["message"]
    assert wan_simulator.stats()["tasks_created"] == 0


def test_expired_and_unknown_uploads_are_refused(hook, wan_simulator, tmp_path: Path) -> None:
    wan_simulator.configure(upload_ttl_seconds=0.0)
    body = _uploaded_body(hook, write_png(tmp_path / "first.png"))
    with pytest.raises(WanInvalidRequestError, match="expired"):
        hook.create_task(ENDPOINT, body)
    body["input"]["media"][0]["url"] = "oss://dashscope-instant/nobody/never.png"
    with pytest.raises(WanInvalidRequestError, match="does not exist"):
        hook.create_task(ENDPOINT, body)
    assert wan_simulator.stats()["tasks_created"] == 0


def test_expired_policy_and_forged_signature_are_refused(hook, wan_simulator, tmp_path: Path) -> None:
    image = write_png(tmp_path / "first.png")
    wan_simulator.configure(upload_policy_ttl_seconds=0.0)
    with pytest.raises(WanRetryableError, match="AccessDenied"):
        _uploaded_body(hook, image)
    wan_simulator.configure(upload_policy_ttl_seconds=3600.0)
    policy = hook.get_upload_policy("wan2.7-i2v")
    form = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": "forged",
        "policy": policy["policy"],
        "key": f"{policy['upload_dir']}/x.png",
    }
    answer = requests.post(policy["upload_host"], data=form, files={"file": ("x.png", image.read_bytes())}, timeout=10)
    assert answer.status_code == 403
    assert "SignatureDoesNotMatch" in answer.text
    assert wan_simulator.stats()["uploads"]["files"] == 0
