"""
Inputs that got past validation (a paid create reached the simulator) or were refused with a confusing or leaky
error, each run through the operator against the DashScope simulator: now refused before any request, naming the
parameter and the model, and without a signed URL's query string in the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.operators.wan import (
    WanImageToVideoOperator,
    WanReferenceToVideoOperator,
    WanTextToVideoOperator,
    WanVaceOperator,
    WanVideoEditOperator,
    WanVideoOperator,
)
from tests.modes.media_files import encode_adts_aac, encode_mp3, encode_wav_to_pipe, write_mp4, write_wav

SECRET = "Signature=sEcReT0123456789"


class _StateStore:
    """Airflow 3.3's task state store accessor, kept in a dict: get, set, delete."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class _TaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _execute(operator_class: type, simulator: Any, monkeypatch: pytest.MonkeyPatch, **params: Any) -> str:
    """Run the operator as Airflow would up to the create (no wait); return the refusal's text."""
    monkeypatch.setenv("AIRFLOW_CONN_WAN_ATTACKS", simulator.connection_json())
    params = {"wait_for_completion": False, **params}
    operator = operator_class(task_id="attack", wan_conn_id="wan_attacks", **params)
    context = {"task_state_store": _StateStore(), "ti": _TaskInstance()}
    with pytest.raises(WanInvalidInputError) as excinfo:
        operator.execute(context=context)
    stats = simulator.stats()
    assert stats["tasks_created"] == 0, stats
    assert sum(stats["requests"].values()) == 0, stats
    return str(excinfo.value)


def test_an_aac_file_is_not_taken_for_an_mp3(tmp_path: Path, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch):
    # ADTS frames start with the 12-bit sync 0xFFF an MP3 frame starts with, but layer bits 00: not MPEG audio
    path = tmp_path / "voice.mp3"
    path.write_bytes(encode_adts_aac(5))
    message = _execute(
        WanTextToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-t2v-preview", prompt="p", audio_url=str(path)
    )
    for fragment in ("audio_url", "wan2.5-t2v-preview", "WAV, MP3"):
        assert fragment in message, message


def test_a_truncated_mp3_is_not_taken_at_its_header_word(
    tmp_path: Path, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # the Xing header still says 10 s, the file (a download cut short) holds under 2 s: audio_url wants 3-30 s
    whole = encode_mp3(10)
    path = tmp_path / "cut.mp3"
    path.write_bytes(whole[: len(whole) // 6])
    message = _execute(
        WanTextToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-t2v-preview", prompt="p", audio_url=str(path)
    )
    for fragment in ("audio_url", "wan2.5-t2v-preview", "cut.mp3 lasts 1.", "3-30 s"):
        assert fragment in message, message


def test_a_truncated_wav_is_not_taken_at_its_header_word(
    tmp_path: Path, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    whole = write_wav(tmp_path / "whole.wav", seconds=10).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[: len(whole) // 5])  # the data chunk still says 10 s; 2 s are there
    message = _execute(
        WanTextToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-t2v-preview", prompt="p", audio_url=str(path)
    )
    for fragment in ("audio_url", "wan2.5-t2v-preview", "cut.wav lasts 2.0 s", "3-30 s"):
        assert fragment in message, message


def test_a_wav_written_to_a_pipe_is_taken_for_what_it_holds(tmp_path: Path):
    # its data chunk says 0xFFFFFFFF bytes (the writer could not go back): 268,435 s at 16 kB/s; it holds 5 s
    path = tmp_path / "voice.wav"
    path.write_bytes(encode_wav_to_pipe(5))
    data = path.read_bytes()
    assert data[data.index(b"data") + 4 :][:4] == b"\xff\xff\xff\xff"
    operator = WanTextToVideoOperator(task_id="pipe", model="wan2.5-t2v-preview", prompt="p", audio_url=str(path))
    _, body = operator.build_request()
    assert body["input"]["audio_url"] == str(path)
    short = tmp_path / "short.wav"
    short.write_bytes(encode_wav_to_pipe(2))
    with pytest.raises(WanInvalidInputError, match=r"audio_url: short.wav lasts 2.0 s; wan2.5-t2v-preview takes"):
        WanTextToVideoOperator(
            task_id="short", model="wan2.5-t2v-preview", prompt="p", audio_url=str(short)
        ).build_request()


@pytest.mark.parametrize(
    ("operator_class", "params", "parameter"),
    [
        (
            WanImageToVideoOperator,
            dict(model="wan2.5-i2v-preview", prompt="p", img_url=f"https://oss.example.com/frame.gif?{SECRET}"),
            "img_url",
        ),
        (
            WanVideoOperator,
            dict(model="wan3.0-video", prompt="p", media=[{"type": "link", "url": f"ftp://example.com/a?{SECRET}"}]),
            "media[0] (link)",
        ),
        (
            WanImageToVideoOperator,
            dict(model="wan2.5-i2v-preview", prompt="p", img_url=f"data:text/html,https://x.example.com/?{SECRET}"),
            "img_url",
        ),
    ],
    ids=["wrong-extension", "link-scheme", "data-uri-not-image"],
)
def test_a_refused_reference_is_named_without_its_signature(
    operator_class: type, params: dict[str, Any], parameter: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    message = _execute(operator_class, wan_simulator, monkeypatch, **params)
    assert parameter in message, message
    assert params["model"] in message, message
    assert "sEcReT" not in message, message


@pytest.mark.parametrize(
    ("operator_class", "params", "parameter"),
    [
        (
            WanTextToVideoOperator,
            dict(model="wan2.5-t2v-preview", prompt="p", parameters={"duration": "7"}),
            "duration",
        ),
        (WanTextToVideoOperator, dict(model="wan9-t2v", prompt="p", parameters={"seed": "x5"}), "seed"),
        (
            WanVaceOperator,
            dict(
                model="wan2.1-vace-plus",
                prompt="p",
                function="video_repainting",
                video_url="https://example.com/a.mp4",
                parameters={"control_condition": "depth", "strength": "1.5"},
            ),
            "strength",
        ),
    ],
    ids=["duration-7", "unknown-model-seed", "strength-1.5"],
)
def test_a_templated_number_in_parameters_is_refused_for_its_value(
    operator_class: type, params: dict[str, Any], parameter: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    message = _execute(operator_class, wan_simulator, monkeypatch, **params)
    assert parameter in message, message
    assert params["model"] in message, message


@pytest.mark.parametrize(
    ("operator_class", "params", "expected"),
    [
        (WanTextToVideoOperator, dict(model="wan2.5-t2v-preview", prompt="p", parameters={"duration": "10"}), 10),
        (WanTextToVideoOperator, dict(model="wan2.5-t2v-preview", prompt="p", parameters={"seed": " 42 "}), 42),
        (
            WanVaceOperator,
            dict(
                model="wan2.1-vace-plus",
                prompt="p",
                function="video_repainting",
                video_url="https://example.com/a.mp4",
                parameters={"control_condition": "depth", "strength": "0.5"},
            ),
            0.5,
        ),
        (WanTextToVideoOperator, dict(model="wan2.5-t2v-preview", prompt="p", parameters={"watermark": "True"}), True),
        (WanTextToVideoOperator, dict(model="wan2.5-t2v-preview", prompt="p", parameters={"audio": "false"}), False),
    ],
    ids=["duration", "seed", "strength", "watermark-True", "audio-false"],
)
def test_a_templated_number_in_parameters_is_sent_as_a_number(
    operator_class: type, params: dict[str, Any], expected: Any
):
    # what Jinja makes of "{{ params.duration }}" (a string) is the number the DAG author wrote
    name = next(iter(params["parameters"].keys() - {"control_condition"}))
    _, body = operator_class(task_id="number", **params).build_request()
    value = body["parameters"][name]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("operator_class", "params", "parameter"),
    [
        (
            WanReferenceToVideoOperator,
            dict(model="wan2.7-r2v", prompt="p", reference_images="https://example.com/a.png"),
            "reference_images",
        ),
        (
            WanReferenceToVideoOperator,
            dict(model="wan2.7-r2v", prompt="p", reference_videos="['https://example.com/a.mp4']"),
            "reference_videos",
        ),
        (
            WanVideoEditOperator,
            dict(model="wan2.7-videoedit", prompt="p", video_url="https://example.com/a.mp4", reference_images="a.png"),
            "reference_images",
        ),
        (
            WanReferenceToVideoOperator,
            dict(
                model="wan2.7-r2v",
                prompt="p",
                reference_images=["https://example.com/a.png"],
                reference_voices="https://example.com/a.wav",
            ),
            "reference_voices",
        ),
        (
            WanReferenceToVideoOperator,
            dict(model="wan2.7-r2v", prompt="p", reference_images=[["https://example.com/a.png"]], reference_voices={}),
            "reference_images",
        ),
    ],
    ids=["images-one-url", "videos-rendered-list", "edit-images-one-path", "voices-a-string", "images-nested-list"],
)
def test_a_string_where_a_list_belongs_is_refused_by_name(
    operator_class: type, params: dict[str, Any], parameter: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # a string is iterable: each of its characters used to become a reference ("19 reference_image items", "cannot
    # read local file 'a'"), a dict() of it a ValueError
    message = _execute(operator_class, wan_simulator, monkeypatch, **params)
    assert f"{parameter}: {params['model']} takes a " in message, message
    assert "got str" in message or "got a list holding something other than strings" in message, message


@pytest.mark.parametrize("budget", [float("nan"), -1.0, "1.0", True])
def test_a_budget_that_is_no_amount_is_refused(budget: Any, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch):
    # NaN compares false to everything: "cost > nan" never holds, so the budget let every request through
    message = _execute(
        WanTextToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-t2v-preview", prompt="p", max_cost_usd=budget
    )
    assert "max_cost_usd" in message, message
    assert "wan2.5-t2v-preview" in message, message


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("https://example.com/frame\n", "starts or ends with whitespace"),
        (" https://example.com/frame.png", "starts or ends with whitespace"),
        ("https://example.com/fra\tme", "control character U+0009 at character 23"),
        ("https://", "names no host"),
        ("https:///frame.png", "names no host"),
        ("https://[::1/frame.png", "is not a valid URL"),
        ("oss://", "names no object"),
        ("HTTPS://example.com/frame.png", "write https:// in lower case"),
    ],
    ids=["trailing-newline", "leading-space", "tab", "no-host", "empty-host", "bad-ipv6", "empty-oss", "upper-case"],
)
def test_a_reference_nothing_can_fetch_is_refused(
    reference: str, fragment: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # these went to DashScope as they were (a paid create of a task that cannot fetch its frame), or were refused as
    # " https:// is not a supported source"
    message = _execute(
        WanImageToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-i2v-preview", prompt="p", img_url=reference
    )
    assert message.startswith("Invalid input for wan2.5-i2v-preview: img_url: ") or message.startswith("img_url: "), (
        message
    )
    assert fragment in message, message
    assert "wan2.5-i2v-preview" in message, message


def test_wan3_reference_videos_are_held_to_fifteen_seconds_in_all(
    tmp_path: Path, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # each of them is within a reference video's own 1-30 s; together they pass Wan 3.0's 15 s (the API reference)
    videos = [str(write_mp4(tmp_path / f"ref{i}.mp4", seconds=8, width=64, height=48)) for i in range(2)]
    media = [{"type": "reference_video", "url": path} for path in videos]
    message = _execute(WanVideoOperator, wan_simulator, monkeypatch, model="wan3.0-video", prompt="p", media=media)
    for fragment in ("media: ", "16.0 s in all", "wan3.0-video takes at most 15 s"):
        assert fragment in message, message
    # one of them alone is fine
    operator = WanVideoOperator(task_id="one", model="wan3.0-video", prompt="p", media=media[:1])
    assert operator.build_request()[1]["input"]["media"] == media[:1]


@pytest.mark.parametrize(
    ("setting", "value", "deferrable"),
    [
        ("timeout", float("nan"), True),
        ("timeout", float("inf"), True),
        ("timeout", 0, False),
        ("timeout", -5, True),
        ("timeout", "3600", False),
        ("poll_interval", float("nan"), True),
        # 0 (or less) read the paid task in a tight loop, in the worker or the triggerer
        ("poll_interval", 0, True),
        ("poll_interval", 0.0, False),
        ("poll_interval", -1, True),
        ("poll_interval", float("inf"), False),
        ("poll_interval", 31 * 24 * 3600, True),
        # centuries: Airflow's deferral deadline (now + timeout) overflowed the database's dates after the create, and
        # every retry re-attached and failed the same way
        ("timeout", 1e12, True),
    ],
    ids=[
        "timeout-nan-deferred",
        "timeout-inf-deferred",
        "timeout-0",
        "timeout-negative",
        "timeout-text",
        "poll-nan",
        "poll-0-deferred",
        "poll-0-worker",
        "poll-negative",
        "poll-inf",
        "poll-31-days",
        "timeout-centuries-deferred",
    ],
)
def test_a_wait_that_cannot_work_is_refused_before_the_create(
    setting: str, value: Any, deferrable: bool, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # these created (and paid for) the task, then failed: a ValueError/OverflowError building the deferral's
    # timedelta, or a timeout of "nan s" / "0 s" before the first read
    message = _execute(
        WanTextToVideoOperator,
        wan_simulator,
        monkeypatch,
        model="wan2.5-t2v-preview",
        prompt="p",
        deferrable=deferrable,
        wait_for_completion=True,
        **{setting: value},
    )
    assert message.startswith(f"{setting}: must be a number of seconds above 0 and at most 2592000 (30 days), got "), (
        message
    )
    assert "wan2.5-t2v-preview" in message, message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (
            dict(duration=5.0),
            "duration: 5.0 is not allowed for wan2.5-t2v-preview; allowed seconds: 5, 10 (an int, not a float)",
        ),
        (
            dict(seed=True),
            "seed: True is out of range for wan2.5-t2v-preview; allowed: an integer in [0, 2147483647] (an int, not "
            "a bool)",
        ),
        (dict(seed=7.0), "(an int, not a float)"),
    ],
    ids=["duration-float", "seed-bool", "seed-float"],
)
def test_a_whole_number_of_the_wrong_type_is_named_as_such(
    params: dict[str, Any], fragment: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # "5.0 is not allowed; allowed seconds: 5, 10" read as a contradiction
    message = _execute(
        WanTextToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-t2v-preview", prompt="p", **params
    )
    assert fragment in message, message


def test_a_huge_value_is_not_echoed_whole(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch):
    # a template that rendered a whole document into size: the error (and the task log) carried all 1 MB of it
    message = _execute(
        WanTextToVideoOperator, wan_simulator, monkeypatch, model="wan2.5-t2v-preview", prompt="p", size="x" * 1_000_000
    )
    assert message.startswith("Invalid input for wan2.5-t2v-preview: size: 'xxx"), message[:200]
    assert len(message) < 1000, len(message)


_V, _I = "https://example.com/a.mp4", "https://example.com/a.png"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (
            dict(function="image_reference", ref_images_url=[_I, _I], parameters={"obj_or_bg": ["bg", "bg"]}),
            "obj_or_bg: 2 images marked bg; wan2.1-vace-plus takes at most 1",
        ),
        (
            dict(function="video_repainting", video_url=_V, ref_images_url=[_I, _I], control_condition="depth"),
            "ref_images_url: 2 reference images; wan2.1-vace-plus function video_repainting takes at most 1",
        ),
        (
            dict(function="video_edit", video_url=_V, mask_image_url=_I, control_condition="scribble"),
            "control_condition: 'scribble' is not allowed for wan2.1-vace-plus function video_edit; allowed: "
            "posebodyface, depth",
        ),
        (
            dict(function="video_extension", video_url=_V, first_clip_url=_V),
            "control_condition: is required by wan2.1-vace-plus function video_extension when a video_url is given",
        ),
        (
            dict(function=["image_reference"], ref_images_url=[_I]),
            "function: ['image_reference'] is not allowed for wan2.1-vace-plus; allowed: image_reference",
        ),
    ],
    ids=[
        "two-backgrounds",
        "repainting-two-references",
        "edit-scribble",
        "extension-video-no-control",
        "function-list",
    ],
)
def test_vace_function_rules_of_the_guide_are_kept(
    params: dict[str, Any], fragment: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    # the VACE guide's per-function rules: these went to DashScope in a paid create (a function given as a list
    # raised "TypeError: unhashable type: 'list'")
    message = _execute(WanVaceOperator, wan_simulator, monkeypatch, model="wan2.1-vace-plus", prompt="p", **params)
    assert fragment in message, message


def test_a_blank_template_name_is_refused(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch):
    # "" was refused, "  " (a template rendering to blanks) went to DashScope in a paid create
    message = _execute(
        WanImageToVideoOperator,
        wan_simulator,
        monkeypatch,
        model="wan2.1-i2v-turbo",
        img_url="https://example.com/a.png",
        template="  ",
    )
    assert "template: must be a non-empty template name" in message, message
    assert "wan2.1-i2v-turbo" in message, message


def test_a_reference_description_is_held_to_plain_text(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch):
    # the prompt's rule (no NUL, no unpaired surrogate) did not reach the media items' own text
    media = [{"type": "reference_image", "url": _I, "reference_description": "the red\x00 car"}]
    message = _execute(WanVideoOperator, wan_simulator, monkeypatch, model="wan3.0-video", prompt="p", media=media)
    assert "media[0].reference_description: holds the control character U+0000 at character 7" in message, message
    assert "wan3.0-video takes plain text" in message, message
