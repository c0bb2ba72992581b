"""
The Wan model catalogue: the one place where model rules live.

Plain data and pure functions, no Airflow import: the operators (to reject bad input before a paid call),
the cost estimator and the DashScope simulator all read these entries. Nothing else keeps its own copy.

Sources (see ``shared/reference/dashscope-wan-api-facts.md`` in the project, and the API reference pages):

* sizes, durations, prompt limits, audio and ``shot_type`` rules of the text-to-video models: the official
  "Wan - text-to-video API reference" (Dec 17, 2025);
* wan2.6 durations 2-15 s: the official text-to-video guide (Feb 25, 2026), newer than the reference's 5/10/15;
* first-and-last-frame (kf2v) models: the official kf2v API reference and guide (Nov 2025 - Mar 2026);
  image limits ([360, 2000] px, <= 10 MB, JPEG/PNG/BMP/WEBP) only from consistent third-party restatements;
* image-to-video models: the official image-to-video API reference (Dec 19, 2025) and the legacy reference
  (Jun 16, 2026); per-model durations of the older i2v models follow the text-to-video models of the same generation;
* concurrency and create-RPS limits: the official rate-limit page (Singapore column, or Beijing where Singapore has
  no row);
* prices: the official pricing page's International (Singapore) list, in CNY, converted at 7.33924 CNY/USD, the ratio
  the English pages' direct USD quotes confirm. ``price_source`` says which entries are derived.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "API_KEY_ENV",
    "AUDIO_URL_EXTENSIONS",
    "CNY_PER_USD",
    "IMAGE_FORMATS",
    "IMAGE_MAX_BYTES",
    "IMAGE_MAX_SIDE",
    "IMAGE_MIN_SIDE",
    "MODELS",
    "NEGATIVE_PROMPT_MAX_CHARS",
    "SEED_MAX",
    "SHOT_TYPES",
    "SIZE_TIERS",
    "Family",
    "Problem",
    "WanModel",
    "cost_from_usage",
    "estimate_cost_usd",
    "get_model",
    "output_dimensions",
    "resolution_tier",
    "validate_request",
]

API_KEY_ENV = "DASHSCOPE_API_KEY"
CNY_PER_USD = 7.33924
SEED_MAX = 2_147_483_647
NEGATIVE_PROMPT_MAX_CHARS = 500
SHOT_TYPES = ("single", "multi")
# Image inputs of image-to-video and first-and-last-frame models.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
IMAGE_MAX_BYTES = 10 * 1024 * 1024
IMAGE_MIN_SIDE = 360
IMAGE_MAX_SIDE = 2000
# audio_url: wav or mp3, 3-30 s, at most 15 MB (text-to-video reference).
AUDIO_URL_EXTENSIONS = (".wav", ".mp3")

# Every size the text-to-video models accept, by resolution tier ("width*height").
SIZE_TIERS: dict[str, tuple[str, ...]] = {
    "480P": ("832*480", "480*832", "624*624"),
    "720P": ("1280*720", "720*1280", "960*960", "1088*832", "832*1088"),
    "1080P": ("1920*1080", "1080*1920", "1440*1440", "1632*1248", "1248*1632"),
}
# The landscape size of each tier: what an image-based model produces for a 16:9 input.
_TIER_DEFAULT_DIMENSIONS = {"480P": (832, 480), "720P": (1280, 720), "1080P": (1920, 1080)}


class Family(str, Enum):
    """Generation mode; decides the endpoint and which inputs are required."""

    TEXT_TO_VIDEO = "t2v"
    IMAGE_TO_VIDEO = "i2v"
    KEYFRAME_TO_VIDEO = "kf2v"

    @property
    def endpoint(self) -> str:
        """Path of the create endpoint below the API base URL."""
        if self is Family.KEYFRAME_TO_VIDEO:
            return "services/aigc/image2video/video-synthesis"
        return "services/aigc/video-generation/video-synthesis"


class UsageStyle(str, Enum):
    """Which ``usage`` fields a model's finished task reports (they differ between generations)."""

    #: wan2.6: duration, size (t2v), input_video_duration, output_video_duration, video_count, SR
    WAN26 = "wan26"
    #: wan2.5 and earlier text-to-video: video_count, video_duration, video_ratio ("832*480")
    SIZE_RATIO = "size_ratio"
    #: image-based models before wan2.6: video_count, video_duration, video_ratio ("standard")
    STANDARD_RATIO = "standard_ratio"


@dataclass(frozen=True)
class WanModel:
    """One Wan model's rules, as the API reference documents them."""

    name: str
    family: Family
    #: allowed ``parameters.size`` values (text-to-video) - empty for image-based models
    sizes: tuple[str, ...] = ()
    default_size: str | None = None
    #: allowed ``parameters.resolution`` tiers (image-based models) - empty for text-to-video
    resolutions: tuple[str, ...] = ()
    default_resolution: str | None = None
    durations: tuple[int, ...] = (5,)
    default_duration: int = 5
    prompt_max_chars: int = 800
    negative_prompt_max_chars: int = NEGATIVE_PROMPT_MAX_CHARS
    supports_audio: bool = False
    supports_audio_url: bool = False
    supports_shot_type: bool = False
    supports_template: bool = False
    #: the audio=true/false price split of some flash models: price per tier when silent
    silent_prices_usd: Mapping[str, float] = field(default_factory=dict)
    #: USD per generated second, by resolution tier
    prices_usd: Mapping[str, float] = field(default_factory=dict)
    price_source: str = "official International price list (CNY), converted at 7.33924 CNY/USD"
    #: simultaneous tasks per account (more wait in PENDING) and create requests per second
    max_concurrent_tasks: int = 2
    create_rps: int = 2
    usage_style: UsageStyle = UsageStyle.SIZE_RATIO
    #: wan2.6 never returns output.actual_prompt, whatever prompt_extend says
    returns_actual_prompt: bool = True
    aliases: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return self.family.endpoint

    @property
    def tiers(self) -> tuple[str, ...]:
        """Resolution tiers this model can produce, lowest first."""
        if self.resolutions:
            return self.resolutions
        return tuple(t for t, sizes in SIZE_TIERS.items() if any(s in self.sizes for s in sizes))


def _sizes(*tiers: str) -> tuple[str, ...]:
    return tuple(s for t in tiers for s in SIZE_TIERS[t])


def _cny(amount: float) -> float:
    return round(amount / CNY_PER_USD, 4)


_WAN26_DURATIONS = tuple(range(2, 16))

_CATALOGUE: tuple[WanModel, ...] = (
    # --- text-to-video -------------------------------------------------------------------------------------------
    WanModel(
        name="wan2.6-t2v",
        family=Family.TEXT_TO_VIDEO,
        sizes=_sizes("720P", "1080P"),
        default_size="1920*1080",
        durations=_WAN26_DURATIONS,
        prompt_max_chars=1500,
        supports_audio=True,
        supports_audio_url=True,
        supports_shot_type=True,
        prices_usd={"720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.WAN26,
        returns_actual_prompt=False,
    ),
    WanModel(
        name="wan2.5-t2v-preview",
        family=Family.TEXT_TO_VIDEO,
        sizes=_sizes("480P", "720P", "1080P"),
        default_size="1920*1080",
        durations=(5, 10),
        prompt_max_chars=1500,
        supports_audio=True,
        supports_audio_url=True,
        prices_usd={"480P": 0.05, "720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
    ),
    WanModel(
        name="wan2.2-t2v-plus",
        family=Family.TEXT_TO_VIDEO,
        sizes=_sizes("480P", "1080P"),
        default_size="1920*1080",
        prices_usd={"480P": _cny(0.146785), "1080P": 0.10},
    ),
    WanModel(
        name="wan2.1-t2v-turbo",
        family=Family.TEXT_TO_VIDEO,
        sizes=_sizes("480P", "720P"),
        default_size="1280*720",
        prices_usd={"480P": 0.036, "720P": 0.036},
        price_source="official English text-to-video reference (USD, May 2025)",
        aliases=("wanx2.1-t2v-turbo",),
    ),
    WanModel(
        name="wan2.1-t2v-plus",
        family=Family.TEXT_TO_VIDEO,
        sizes=_sizes("720P"),
        default_size="1280*720",
        prices_usd={"720P": 0.10},
        price_source="official English text-to-video reference (USD, May 2025)",
        aliases=("wanx2.1-t2v-plus",),
    ),
    # --- first-and-last-frame ------------------------------------------------------------------------------------
    WanModel(
        name="wan2.2-kf2v-flash",
        family=Family.KEYFRAME_TO_VIDEO,
        resolutions=("480P", "720P", "1080P"),
        default_resolution="720P",
        prices_usd={"480P": _cny(0.10), "720P": _cny(0.20), "1080P": _cny(0.48)},
        price_source=(
            "no International price published; Beijing price list (CNY 0.10/0.20/0.48) converted at 7.33924 CNY/USD"
        ),
        usage_style=UsageStyle.STANDARD_RATIO,
    ),
    WanModel(
        name="wan2.1-kf2v-plus",
        family=Family.KEYFRAME_TO_VIDEO,
        resolutions=("720P",),
        default_resolution="720P",
        supports_template=True,
        prices_usd={"720P": 0.10},
        price_source="official English kf2v API reference (USD, Jun 2025)",
        max_concurrent_tasks=2,
        create_rps=1,
        usage_style=UsageStyle.STANDARD_RATIO,
        aliases=("wanx2.1-kf2v-plus",),
    ),
    # --- image-to-video (first frame) ----------------------------------------------------------------------------
    WanModel(
        name="wan2.6-i2v",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("720P", "1080P"),
        default_resolution="1080P",
        durations=_WAN26_DURATIONS,
        prompt_max_chars=1500,
        supports_audio=True,
        supports_audio_url=True,
        supports_shot_type=True,
        prices_usd={"720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.WAN26,
        returns_actual_prompt=False,
    ),
    WanModel(
        name="wan2.6-i2v-flash",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("720P", "1080P"),
        default_resolution="1080P",
        durations=_WAN26_DURATIONS,
        prompt_max_chars=1500,
        supports_audio=True,
        supports_audio_url=True,
        supports_shot_type=True,
        prices_usd={"720P": 0.05, "1080P": 0.075},
        silent_prices_usd={"720P": 0.025, "1080P": 0.0375},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.WAN26,
        returns_actual_prompt=False,
    ),
    WanModel(
        name="wan2.5-i2v-preview",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("480P", "720P", "1080P"),
        default_resolution="1080P",
        durations=(5, 10),
        prompt_max_chars=1500,
        supports_audio=True,
        supports_audio_url=True,
        prices_usd={"480P": 0.05, "720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.STANDARD_RATIO,
    ),
    WanModel(
        name="wan2.2-i2v-plus",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("480P", "1080P"),
        default_resolution="1080P",
        prices_usd={"480P": 0.02, "1080P": 0.10},
        usage_style=UsageStyle.STANDARD_RATIO,
    ),
    WanModel(
        name="wan2.2-i2v-flash",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("480P", "720P"),
        default_resolution="720P",
        prices_usd={"480P": _cny(0.110089), "720P": _cny(0.264213)},
        usage_style=UsageStyle.STANDARD_RATIO,
    ),
    WanModel(
        name="wan2.1-i2v-turbo",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("480P", "720P"),
        default_resolution="720P",
        durations=(3, 4, 5),
        supports_template=True,
        prices_usd={"480P": 0.036, "720P": 0.036},
        usage_style=UsageStyle.STANDARD_RATIO,
        aliases=("wanx2.1-i2v-turbo",),
    ),
    WanModel(
        name="wan2.1-i2v-plus",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("720P",),
        default_resolution="720P",
        supports_template=True,
        prices_usd={"720P": 0.10},
        usage_style=UsageStyle.STANDARD_RATIO,
        aliases=("wanx2.1-i2v-plus",),
    ),
)

#: Every known model name (aliases included) -> its entry.
MODELS: dict[str, WanModel] = {}
for _m in _CATALOGUE:
    for _name in (_m.name, *_m.aliases):
        MODELS[_name] = _m


def get_model(name: str) -> WanModel | None:
    """Return the catalogue entry for ``name`` (or one of its aliases), or None for a model the catalogue lacks."""
    return MODELS.get(name)


def models_of(family: Family) -> list[str]:
    """Canonical names of the catalogue's models of one family, for error messages and docs."""
    return [m.name for m in _CATALOGUE if m.family is family]


def resolution_tier(model: WanModel, size: str | None = None, resolution: str | None = None) -> str:
    """The price tier (480P/720P/1080P) a request lands in, defaults applied."""
    if model.family is Family.TEXT_TO_VIDEO:
        size = size or model.default_size
        for tier, sizes in SIZE_TIERS.items():
            if size in sizes:
                return tier
        raise ValueError(f"size {size!r} is in no resolution tier")
    return (resolution or model.default_resolution or "").upper()


def output_dimensions(model: WanModel, size: str | None = None, resolution: str | None = None) -> tuple[int, int]:
    """Width and height of the video a request produces (image-based models: the tier's landscape size)."""
    if model.family is Family.TEXT_TO_VIDEO:
        width, height = (size or model.default_size or "").split("*")
        return int(width), int(height)
    return _TIER_DEFAULT_DIMENSIONS[resolution_tier(model, resolution=resolution)]


def estimate_cost_usd(
    model: WanModel,
    *,
    size: str | None = None,
    resolution: str | None = None,
    duration: int | None = None,
    audio: bool | None = None,
    audio_url: str | None = None,
) -> float | None:
    """
    Estimated price of one generation in USD: price per second of the tier x duration in seconds.

    Failed tasks are free, so this is the price of success. None when the catalogue has no price for the tier.
    """
    tier = resolution_tier(model, size, resolution)
    prices = model.prices_usd
    # audio defaults to on where it is supported; the silent price applies only when it is explicitly off
    if model.silent_prices_usd and audio is False and not audio_url:
        prices = model.silent_prices_usd
    price = prices.get(tier)
    if price is None:
        return None
    return round(price * (duration or model.default_duration), 4)


def cost_from_usage(model_name: str | None, usage: Mapping[str, Any]) -> float | None:
    """
    Estimated price in USD of a finished task from its ``usage`` (the catalogue's list price x seconds).

    ``usage`` differs between model generations: ``output_video_duration`` / ``video_duration`` / ``duration`` for
    the seconds, ``size`` or a ``W*H`` ``video_ratio`` for text-to-video, ``SR`` (480, 720, 1080) for the tier.
    None for a model the catalogue does not know or a tier it has no price for.
    """
    model = get_model(model_name) if model_name else None
    if model is None:
        return None
    duration = None
    for key in ("output_video_duration", "video_duration", "duration"):
        value = usage.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            duration = int(value)
            break
    size = usage.get("size")
    ratio = usage.get("video_ratio")
    if not size and isinstance(ratio, str) and "*" in ratio:
        size = ratio
    sr = usage.get("SR")
    resolution = f"{sr}P" if isinstance(sr, int) and not isinstance(sr, bool) else None
    try:
        return estimate_cost_usd(model, size=size, resolution=resolution, duration=duration)
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Problem:
    """One reason a request is not acceptable for a model: which parameter, what was wrong, what is allowed."""

    parameter: str
    message: str
    #: True when DashScope would accept the request but silently cut this text (prompt limits)
    truncation: bool = False

    def __str__(self) -> str:
        return f"{self.parameter}: {self.message}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://", value, re.IGNORECASE) is not None


def _is_image_reference(value: Any) -> bool:
    """What the API accepts for an image: an http(s) URL, a base64 data URI, or a DashScope temporary oss:// URL."""
    if not isinstance(value, str) or not value:
        return False
    return _is_http_url(value) or value.startswith(("data:image/", "oss://"))


def validate_request(
    model: WanModel, input_: Mapping[str, Any], parameters: Mapping[str, Any], *, endpoint: str | None = None
) -> list[Problem]:
    """
    Check a create request's ``input`` and ``parameters`` against one model's rules.

    Returns every problem found (empty when the request is acceptable). Problems flagged ``truncation`` are texts
    DashScope would cut silently rather than refuse: the simulator cuts them, the operators refuse them.
    ``endpoint`` (the create path) is checked when given.
    """
    problems: list[Problem] = []
    name = model.name

    def bad(parameter: str, message: str, truncation: bool = False) -> None:
        problems.append(Problem(parameter, message, truncation))

    if endpoint is not None and endpoint.strip("/") != model.endpoint:
        bad("model", f"{name} is served at {model.endpoint}, not {endpoint.strip('/')} (url error, please check url!)")

    # --- texts ---------------------------------------------------------------------------------------------------
    prompt = input_.get("prompt")
    if model.family is Family.TEXT_TO_VIDEO and not (isinstance(prompt, str) and prompt.strip()):
        bad("prompt", f"is required for text-to-video model {name}")
    if prompt is not None and not isinstance(prompt, str):
        bad("prompt", f"must be a string, got {type(prompt).__name__}")
    elif isinstance(prompt, str) and len(prompt) > model.prompt_max_chars:
        bad(
            "prompt",
            f"is {len(prompt)} characters; {name} allows at most {model.prompt_max_chars} "
            "(DashScope silently truncates the rest)",
            truncation=True,
        )
    negative = input_.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        bad("negative_prompt", f"must be a string, got {type(negative).__name__}")
    elif isinstance(negative, str) and len(negative) > model.negative_prompt_max_chars:
        bad(
            "negative_prompt",
            f"is {len(negative)} characters; {name} allows at most {model.negative_prompt_max_chars} "
            "(DashScope silently truncates the rest)",
            truncation=True,
        )

    # --- images --------------------------------------------------------------------------------------------------
    template = input_.get("template")
    if template is not None:
        if not model.supports_template:
            with_template = [m.name for m in _CATALOGUE if m.supports_template]
            bad("template", f"is not supported by {name}; models with effect templates: {', '.join(with_template)}")
        elif not (isinstance(template, str) and template):
            bad("template", "must be a non-empty template name")
    if model.family is Family.IMAGE_TO_VIDEO:
        _check_image(problems, "img_url", input_.get("img_url"), name, required=True)
    elif model.family is Family.KEYFRAME_TO_VIDEO:
        _check_image(problems, "first_frame_url", input_.get("first_frame_url"), name, required=True)
        last = input_.get("last_frame_url")
        if last is None and template is None:
            bad(
                "last_frame_url",
                f"is required by {name} unless a template is given (with a template only the first frame is used)",
            )
        elif last is not None:
            _check_image(problems, "last_frame_url", last, name, required=False)
    for image_field in ("img_url", "first_frame_url", "last_frame_url"):
        if image_field in input_ and not _accepts_image(model, image_field):
            bad(image_field, f"is not an input of {model.family.value} model {name}")

    # --- size / resolution ---------------------------------------------------------------------------------------
    size = parameters.get("size")
    resolution = parameters.get("resolution")
    if model.family is Family.TEXT_TO_VIDEO:
        if resolution is not None:
            bad(
                "resolution", f"is not a parameter of text-to-video model {name}; use size, one of {_list(model.sizes)}"
            )
        if size is not None and size not in model.sizes:
            bad("size", f"{size!r} is not allowed for {name}; allowed: {_list(model.sizes)} (width*height)")
    else:
        if size is not None:
            bad("size", f"is not a parameter of {name}; use resolution, one of {_list(model.resolutions)}")
        if resolution is not None and resolution not in model.resolutions:
            bad("resolution", f"{resolution!r} is not allowed for {name}; allowed: {_list(model.resolutions)}")

    # --- duration ------------------------------------------------------------------------------------------------
    duration = parameters.get("duration")
    if duration is not None and (not _is_int(duration) or duration not in model.durations):
        bad("duration", f"{duration!r} is not allowed for {name}; allowed seconds: {_durations(model.durations)}")

    # --- booleans ------------------------------------------------------------------------------------------------
    for flag in ("prompt_extend", "watermark", "audio"):
        if flag in parameters and not isinstance(parameters[flag], bool):
            bad(flag, f"must be true or false, got {parameters[flag]!r}")

    # --- shot_type -----------------------------------------------------------------------------------------------
    shot_type = parameters.get("shot_type")
    if shot_type is not None:
        if not model.supports_shot_type:
            bad("shot_type", f"is not supported by {name}; only {_list(_names(lambda m: m.supports_shot_type))}")
        elif shot_type not in SHOT_TYPES:
            bad("shot_type", f"{shot_type!r} is not allowed; allowed: {_list(SHOT_TYPES)}")
        elif parameters.get("prompt_extend") is False:
            bad("shot_type", "takes effect only with prompt_extend=true; set prompt_extend to true or drop shot_type")

    # --- audio ---------------------------------------------------------------------------------------------------
    if parameters.get("audio") is not None and not model.supports_audio:
        bad(
            "audio",
            f"is not supported by {name} (it makes silent videos); only {_list(_names(lambda m: m.supports_audio))}",
        )
    audio_url = input_.get("audio_url")
    if audio_url is not None:
        if not model.supports_audio_url:
            bad("audio_url", f"is not supported by {name}; only {_list(_names(lambda m: m.supports_audio_url))}")
        elif not _is_http_url(audio_url):
            bad("audio_url", f"must be an http(s) URL of a wav or mp3 file (3-30 s, at most 15 MB), got {audio_url!r}")
        else:
            path = audio_url.split("?", 1)[0].lower()
            if "." in path.rsplit("/", 1)[-1] and not path.endswith(AUDIO_URL_EXTENSIONS):
                bad("audio_url", f"must point to a wav or mp3 file, got {audio_url!r}")

    # --- seed ----------------------------------------------------------------------------------------------------
    seed = parameters.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= SEED_MAX):
        bad("seed", f"{seed!r} is out of range; allowed: an integer in [0, {SEED_MAX}]")
    return problems


def _accepts_image(model: WanModel, field_name: str) -> bool:
    if model.family is Family.IMAGE_TO_VIDEO:
        return field_name == "img_url"
    if model.family is Family.KEYFRAME_TO_VIDEO:
        return field_name in ("first_frame_url", "last_frame_url")
    return False


def _check_image(problems: list[Problem], parameter: str, value: Any, name: str, *, required: bool) -> None:
    if value is None or value == "":
        if required:
            problems.append(Problem(parameter, f"is required by {name}"))
        return
    if not _is_image_reference(value):
        problems.append(
            Problem(
                parameter,
                f"must be an http(s) URL or a data:image/...;base64 URI (JPEG, PNG, BMP or WEBP, at most 10 MB), "
                f"got {_shorten(value)!r}",
            )
        )


def _names(predicate: Any) -> tuple[str, ...]:
    return tuple(m.name for m in _CATALOGUE if predicate(m))


def _list(values: tuple[Any, ...] | list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _durations(durations: tuple[int, ...]) -> str:
    if len(durations) > 3 and list(durations) == list(range(durations[0], durations[-1] + 1)):
        return f"{durations[0]}-{durations[-1]} (whole seconds)"
    return _list(durations)


def _shorten(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
