"""The request schema and the catalogue's new shapes, as pure functions (no server, no Airflow)."""

from __future__ import annotations

import pytest

from airflow_provider_wan.models import (
    MODELS,
    estimate_cost_usd,
    get_model,
    output_dimensions,
    price_overrides,
)
from airflow_provider_wan.schema import FIELDS, Where, field_named, media_references, models_accepting, place
from airflow_provider_wan.schema import validate_request as validate


def test_place_puts_each_field_where_the_table_says():
    input_, parameters = place(
        {"prompt": "p", "media": [], "function": "video_edit", "resolution": "720P", "seed": 1, "audio": None}
    )
    assert input_ == {"prompt": "p", "media": [], "function": "video_edit"}
    assert parameters == {"resolution": "720P", "seed": 1}
    with pytest.raises(KeyError):
        place({"not_a_field": 1})


def test_every_row_is_taken_by_some_model_and_every_model_takes_a_prompt_or_media():
    for row in FIELDS:
        assert models_accepting(row.name), f"{row.name} is taken by no model"
    for model in {m.name: m for m in MODELS.values()}.values():
        takes = {row.name for row in FIELDS if row.accepted(model)}
        assert takes & {"prompt", "image_url"}, model.name
        assert ("media" in takes) is model.uses_media


def test_size_and_resolution_point_at_each_other():
    t2v, i2v = get_model("wan2.6-t2v"), get_model("wan2.6-i2v")
    assert t2v is not None
    assert i2v is not None
    [problem] = validate(t2v, {"prompt": "p"}, {"resolution": "720P"})
    assert problem.parameter == "resolution"
    assert "use size" in problem.message
    [problem] = validate(i2v, {"img_url": "https://x.org/a.png"}, {"size": "1280*720"})
    assert "use resolution" in problem.message


def test_media_references_walks_every_shape():
    input_ = {
        "img_url": "a.png",
        "reference_urls": ["b.png", "https://x.org/c.mp4"],
        "media": [
            {"type": "reference_image", "url": "d.png", "reference_voice": "e.wav"},
            {"type": "link", "url": "u"},
        ],
    }
    found = [(ref.parameter, ref.value) for ref in media_references(input_)]
    assert found == [
        ("img_url", "a.png"),
        ("reference_urls[0]", "b.png"),
        ("reference_urls[1]", "https://x.org/c.mp4"),
        ("media[0] (reference_image)", "d.png"),
        ("media[0].reference_voice", "e.wav"),
    ]
    next(media_references(input_)).replace("oss://x/a.png")
    assert input_["img_url"] == "oss://x/a.png"


def test_the_simulator_never_takes_a_local_path():
    model = get_model("wan2.7-i2v")
    assert model is not None
    media = [{"type": "first_frame", "url": "/tmp/first.png"}]
    assert not validate(model, {"media": media}, {}, local_ok=True)
    [problem] = validate(model, {"media": media}, {})
    assert "http(s) URL" in problem.message


@pytest.mark.parametrize(
    ("ratio", "size"), [(None, (1280, 720)), ("9:16", (720, 1280)), ("1:1", (960, 960)), ("adaptive", (1280, 720))]
)
def test_output_dimensions_follow_resolution_and_ratio(ratio, size):
    model = get_model("wan3.0-video")
    assert model is not None
    assert output_dimensions(model, resolution="720P", ratio=ratio) == size


def test_cost_of_the_new_billing_shapes():
    wan3 = get_model("wan3.0-video")
    edit = get_model("wan2.7-videoedit")
    vace = get_model("wan2.1-vace-plus")
    assert wan3 is not None
    assert edit is not None
    assert vace is not None
    # duration -1: the longest the model makes (30 s), an upper bound
    assert estimate_cost_usd(wan3, resolution="720P", duration=-1) == pytest.approx(0.0588 * 30)
    # input video seconds are billed on Wan 3.0
    assert estimate_cost_usd(wan3, resolution="720P", duration=5, input_video_seconds=10) == pytest.approx(0.882)
    assert estimate_cost_usd(edit, resolution="720P", duration=0) == pytest.approx(0.0706 * 10)
    assert estimate_cost_usd(vace) is None
    assert estimate_cost_usd(vace, prices={"720P": 0.2}) == pytest.approx(1.0)


def test_price_overrides_merge_and_refuse_garbage():
    merged = price_overrides('{"wan3.0-video": {"720p": 0.06}}', {"wan3.0-video": {"1080P": 0.12}})
    assert merged == {"wan3.0-video": {"720P": 0.06, "1080P": 0.12}}
    with pytest.raises(ValueError, match=r"prices\['x'\]"):
        price_overrides({"x": {"720P": "cheap"}})


def test_enable_thinking_is_one_row():
    row = field_named("enable_thinking")
    assert row is not None
    assert row.where is Where.PARAMETERS
    assert models_accepting("enable_thinking") == ["wan3.0-video", "wan3.0-video-prime"]
