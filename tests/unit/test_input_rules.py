"""Request rules of issue 10: ASCII-only numbers, plain-text prompts, model-name slips, cost of the final body."""

from __future__ import annotations

import pytest

from airflow_provider_wan.models import get_model, model_name_problem, request_cost_usd
from airflow_provider_wan.schema import (
    parse_int,
    text_problem,
    validate_request,
    validate_texts,
    validate_unknown_model_request,
)

WAN25 = get_model("wan2.5-t2v-preview")


@pytest.mark.parametrize(("given", "parsed"), [("42", 42), (" 7 ", 7), ("-1", -1), (5, 5), (None, None)])
def test_parse_int_takes_ascii_digits(given, parsed):
    assert parse_int(given) == parsed


@pytest.mark.parametrize("given", ["５", "٣", "1０", "๕", "²", "5.0", "1e3", "", "+-1", "0x10"])
def test_parse_int_leaves_anything_else_alone(given):
    assert parse_int(given) == given


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a\ud800b", "unpaired surrogate (U+D800)"),
        ("\udfff", "unpaired surrogate (U+DFFF)"),
        ("fox\x00", "U+0000"),
        ("fox\x1b[31m", "U+001B"),
        ("fox\x7f", "U+007F"),
        ("fox\x85", "U+0085"),
        ("fox\rdog", "U+000D"),
    ],
)
def test_text_problem_refuses_what_is_not_plain_text(text, fragment):
    problem = text_problem(text)
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize("text", ["a fox\nin snow\twith 🦊, 狐狸", "windows\r\nline ends", "zero\u200bwidth", ""])
def test_text_problem_accepts_text(text):
    assert text_problem(text) is None


def test_validate_texts_names_prompt_model_and_rule():
    problems = validate_texts("wan2.5-t2v-preview", {"prompt": "ok", "negative_prompt": "no\x00", "img_url": "a\x00"})
    assert [p.parameter for p in problems] == ["negative_prompt"]
    assert "wan2.5-t2v-preview" in str(problems[0])
    assert "U+0000" in str(problems[0])
    # DashScope takes such a prompt, so the simulator's validation (validate_request) does not refuse it
    assert validate_request(WAN25, {"prompt": "no\x00"}, {}) == []


@pytest.mark.parametrize(("parameter", "value"), [("duration", "５"), ("seed", "٣")])
def test_non_ascii_digits_are_refused_for_catalogue_and_unknown_models(parameter, value):
    [known] = validate_request(WAN25, {"prompt": "p"}, {parameter: value})
    assert known.parameter == parameter
    assert "ASCII digits" in known.message
    assert "wan2.5-t2v-preview" in known.message
    [unknown] = validate_unknown_model_request("wan9-t2v", {"prompt": "p"}, {parameter: value})
    assert unknown.parameter == parameter
    assert "ASCII digits" in unknown.message
    assert "wan9-t2v" in unknown.message


def test_unknown_model_texts_are_checked_too():
    [problem] = validate_unknown_model_request("wan9-t2v", {"prompt": "a\ud800"}, {"duration": 5})
    assert problem.parameter == "prompt"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Wan2.5-T2V-Preview", "wan2.5-t2v-preview"),
        ("wan2.5-t2v -preview", "wan2.5-t2v-preview"),
        (" wan2.6-t2v", "wan2.6-t2v"),
        ("wan2.5-t2v-previw", "wan2.5-t2v-preview"),
        ("wan2.2-kf2v-flsh", "wan2.2-kf2v-flash"),
        ("wan2.6-i2vflash", "wan2.6-i2v-flash"),
    ],
)
def test_a_slip_of_a_catalogue_name_is_refused_with_a_suggestion(name, suggestion):
    problem = model_name_problem(name)
    assert problem is not None
    assert f"did you mean {suggestion!r}?" in problem


@pytest.mark.parametrize(
    "name", ["wan2.5-t2v-preview", "wan2.9-t2v", "wan3.5-i2v-flash", "wan2.5-t2v-plus", "veo-3", "x"]
)
def test_known_and_truly_new_names_pass(name):
    assert model_name_problem(name) is None


def test_cost_of_the_final_body_includes_the_extras():
    # the case: {"duration": 10} through parameters_extra went out at $1.50 under a $1.00 cap
    assert request_cost_usd(WAN25, {"prompt": "p"}, {"duration": 10}) == pytest.approx(1.50)
    assert request_cost_usd(WAN25, {"prompt": "p"}, {}) == pytest.approx(0.75)
    assert request_cost_usd(WAN25, {"prompt": "p"}, {"size": "832*480", "duration": 10}) == pytest.approx(0.50)
    flash = get_model("wan2.6-i2v-flash")
    assert request_cost_usd(flash, {}, {"resolution": "720P", "audio": False}) == pytest.approx(0.125)
    assert request_cost_usd(flash, {"audio_url": "https://a/b.mp3"}, {"resolution": "720P", "audio": False}) == (
        pytest.approx(0.25)
    )


@pytest.mark.parametrize(
    ("model", "parameters"),
    [
        ("wan2.5-t2v-preview", {"size": "9*9"}),
        ("wan2.5-t2v-preview", {"size": ["x"]}),
        ("wan2.6-i2v", {"resolution": 7}),
    ],
)
def test_cost_of_a_body_the_model_cannot_price_is_unknown(model, parameters):
    assert request_cost_usd(get_model(model), {}, parameters) is None
