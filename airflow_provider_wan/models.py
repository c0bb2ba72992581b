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

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "API_KEY_ENV",
    "CNY_PER_USD",
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
    "model_name_problem",
    "output_dimensions",
    "price_overrides",
    "request_cost_usd",
    "resolution_tier",
]

API_KEY_ENV = "DASHSCOPE_API_KEY"
CNY_PER_USD = 7.33924
SEED_MAX = 2_147_483_647
NEGATIVE_PROMPT_MAX_CHARS = 500
SHOT_TYPES = ("single", "multi")

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
    REFERENCE_TO_VIDEO = "r2v"
    VIDEO_EDIT = "videoedit"
    #: Wan 3.0: text, first/last frame and image/video/audio references in one model
    ALL_IN_ONE = "all-in-one"
    VACE = "vace"
    SPEECH_TO_VIDEO = "s2v"
    ANIMATE = "animate"

    @property
    def endpoint(self) -> str:
        """Path of the create endpoint below the API base URL."""
        if self in (Family.KEYFRAME_TO_VIDEO, Family.SPEECH_TO_VIDEO, Family.ANIMATE):
            return IMAGE2VIDEO_ENDPOINT
        return VIDEO_GENERATION_ENDPOINT

    @property
    def label(self) -> str:
        return _FAMILY_TITLES[self]


VIDEO_GENERATION_ENDPOINT = "services/aigc/video-generation/video-synthesis"
IMAGE2VIDEO_ENDPOINT = "services/aigc/image2video/video-synthesis"
_FAMILY_TITLES = {
    Family.TEXT_TO_VIDEO: "text-to-video",
    Family.IMAGE_TO_VIDEO: "image-to-video",
    Family.KEYFRAME_TO_VIDEO: "first-and-last-frame",
    Family.REFERENCE_TO_VIDEO: "reference-to-video",
    Family.VIDEO_EDIT: "video editing",
    Family.ALL_IN_ONE: "all-in-one (Wan 3.0)",
    Family.VACE: "VACE video editing",
    Family.SPEECH_TO_VIDEO: "speech-to-video",
    Family.ANIMATE: "animate",
}


class UsageStyle(str, Enum):
    """Which ``usage`` fields a model's finished task reports (they differ between generations)."""

    #: wan2.6: duration, size (t2v), input_video_duration, output_video_duration, video_count, SR
    WAN26 = "wan26"
    #: wan2.5 and earlier text-to-video: video_count, video_duration, video_ratio ("832*480")
    SIZE_RATIO = "size_ratio"
    #: image-based models before wan2.6: video_count, video_duration, video_ratio ("standard")
    STANDARD_RATIO = "standard_ratio"
    #: wan2.7 and Wan 3.0: input_video_duration + output_video_duration (both billed on Wan 3.0), SR, ratio
    MEDIA = "media"


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
    # --- the newer request shapes (wan2.7, Wan 3.0, r2v, VACE, s2v, animate) ------------------------------------
    #: ``parameters.ratio`` values (resolution + ratio models); empty: no ratio parameter
    ratios: tuple[str, ...] = ()
    #: ``input.media`` item types and how many of each one request may hold; non-empty: the ``media`` protocol
    media: Mapping[str, int] = field(default_factory=dict)
    #: reference_image / reference_video items may carry a ``reference_voice`` (wav/mp3, 1-10 s)
    reference_voices: bool = False
    #: at least one of these media types is required (empty: none)
    media_required: tuple[str, ...] = ()
    #: media types that cannot be sent together
    media_exclusive: tuple[tuple[str, str], ...] = ()
    #: (a, b): a media item of type a needs one of type b
    media_needs: tuple[tuple[str, str], ...] = ()
    #: most reference_image + reference_video items together (None: only the per-type counts)
    max_references: int | None = None
    #: durations allowed when a reference or source video is given (r2v: shorter)
    durations_with_video: tuple[int, ...] = ()
    #: most seconds the reference_video items may last together (None: only each item's own range); checked on the
    #: files read before the upload (a URL's length is DashScope's to judge)
    reference_video_seconds: float | None = None
    #: ``input`` fields every request must carry (the old protocol's images, audio, videos)
    required_inputs: tuple[str, ...] = ()
    prompt_required: bool = False
    #: VACE: ``input.function`` -> the inputs it requires
    functions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: VACE, per function: most ``ref_images_url`` (where fewer than the field's 1-3), the ``control_condition``
    #: values it takes (where fewer than the field's four), what it needs once a ``video_url`` is given
    function_max_ref_images: Mapping[str, int] = field(default_factory=dict)
    function_control_conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    function_needs_with_video: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: VACE: most reference images ``obj_or_bg`` may mark as background
    max_background_images: int | None = None
    #: animate: ``parameters.mode`` values; video editing: ``parameters.audio_setting`` values
    modes: tuple[str, ...] = ()
    audio_settings: tuple[str, ...] = ()
    seed_min: int = 0
    #: seconds of input video billed on top of the output (r2v reference videos, Wan 3.0)
    bills_input_video: bool = False
    #: where the catalogue entry's facts come from
    source: str = "official API reference"

    @property
    def endpoint(self) -> str:
        return self.family.endpoint

    @property
    def uses_media(self) -> bool:
        """True for models on the ``input.media`` list protocol (wan2.7 i2v/r2v/videoedit, Wan 3.0)."""
        return bool(self.media)

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
_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4")
_WAN27_SOURCE = "official wan2.7 API references (Mar-Jun 2026) and the dashscope SDK 2.0.2"
_WAN3_SOURCE = "official Wan 3.0 API reference (preview, Sep-Oct 2026) and the dashscope SDK 2.0.2"
_WAN3_PRICE_SOURCE = "reseller list at 98% of official (docs.apiyi.com) and a user log (480P); override it"
_WAN3_MEDIA = {
    "first_frame": 1,
    "last_frame": 1,
    "reference_image": 10,
    "reference_video": 5,
    "reference_audio": 5,
    "file": 1,
    "link": 1,
}
# frames or references, a file or a link
_WAN3_EXCLUSIVE = (
    *(
        (frame, ref)
        for frame in ("first_frame", "last_frame")
        for ref in ("reference_image", "reference_video", "reference_audio")
    ),
    ("file", "link"),
)

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
    # --- wan2.7: resolution + ratio; i2v, r2v and videoedit on the input.media protocol ------------------------------
    WanModel(
        name="wan2.7-t2v",
        family=Family.TEXT_TO_VIDEO,
        resolutions=("720P", "1080P"),
        default_resolution="1080P",
        ratios=_RATIOS,
        durations=_WAN26_DURATIONS,
        prompt_max_chars=5000,
        supports_audio=True,
        supports_audio_url=True,
        prices_usd={"720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.MEDIA,
        returns_actual_prompt=False,
        aliases=("wan2.7-t2v-2026-04-25", "wan2.7-t2v-2026-06-12"),
        source=_WAN27_SOURCE,
    ),
    WanModel(
        name="wan2.7-i2v",
        family=Family.IMAGE_TO_VIDEO,
        resolutions=("720P", "1080P"),
        default_resolution="1080P",
        durations=_WAN26_DURATIONS,
        prompt_max_chars=5000,
        supports_audio=True,
        media={"first_frame": 1, "last_frame": 1, "driving_audio": 1, "first_clip": 1},
        media_required=("first_frame", "first_clip"),
        media_exclusive=(("first_clip", "first_frame"), ("first_clip", "driving_audio")),
        media_needs=(("last_frame", "first_frame"),),
        prices_usd={"720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.MEDIA,
        returns_actual_prompt=False,
        bills_input_video=True,
        aliases=("wan2.7-i2v-2026-04-25",),
        source=_WAN27_SOURCE,
    ),
    WanModel(
        name="wan2.7-r2v",
        family=Family.REFERENCE_TO_VIDEO,
        resolutions=("720P", "1080P"),
        default_resolution="1080P",
        ratios=_RATIOS,
        durations=_WAN26_DURATIONS,
        durations_with_video=tuple(range(2, 11)),
        prompt_max_chars=5000,
        supports_audio=True,
        media={"reference_image": 5, "reference_video": 5, "first_frame": 1},
        reference_voices=True,
        media_required=("reference_image", "reference_video"),
        max_references=5,
        prices_usd={"720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.MEDIA,
        returns_actual_prompt=False,
        bills_input_video=True,
        aliases=("wan2.7-r2v-2026-06-12",),
        source=_WAN27_SOURCE,
    ),
    WanModel(
        name="wan2.7-videoedit",
        family=Family.VIDEO_EDIT,
        resolutions=("720P", "1080P"),
        default_resolution="1080P",
        ratios=_RATIOS,
        # 0: as long as the source video
        durations=(0, *range(2, 11)),
        default_duration=0,
        prompt_max_chars=5000,
        media={"video": 1, "reference_image": 4},
        media_required=("video",),
        audio_settings=("auto", "origin"),
        prices_usd={"720P": 0.0706, "1080P": 0.1165},
        price_source="reseller list (no official International price found); override it, see the cost docs",
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.MEDIA,
        returns_actual_prompt=False,
        source=_WAN27_SOURCE,
    ),
    # --- Wan 3.0: one model for text, frames and references (preview) ------------------------------------------------
    WanModel(
        name="wan3.0-video",
        family=Family.ALL_IN_ONE,
        resolutions=("480P", "720P", "1080P"),
        default_resolution="1080P",
        ratios=(*_RATIOS, "adaptive"),
        # -1: the model picks the length
        durations=(-1, *range(2, 31)),
        prompt_max_chars=20_000,
        supports_audio=True,
        media=_WAN3_MEDIA,
        media_exclusive=_WAN3_EXCLUSIVE,
        media_needs=(("last_frame", "first_frame"),),
        reference_video_seconds=15,
        seed_min=-1,
        prices_usd={"480P": 0.05, "720P": 0.0588, "1080P": 0.1176},
        price_source=_WAN3_PRICE_SOURCE,
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.MEDIA,
        returns_actual_prompt=False,
        bills_input_video=True,
        source=_WAN3_SOURCE,
    ),
    WanModel(
        name="wan3.0-video-prime",
        family=Family.ALL_IN_ONE,
        resolutions=("480P", "720P", "1080P"),
        default_resolution="1080P",
        ratios=(*_RATIOS, "adaptive"),
        durations=(-1, *range(2, 31)),
        prompt_max_chars=20_000,
        supports_audio=True,
        media=_WAN3_MEDIA,
        media_exclusive=_WAN3_EXCLUSIVE,
        media_needs=(("last_frame", "first_frame"),),
        reference_video_seconds=15,
        seed_min=-1,
        prices_usd={"720P": 0.126},
        price_source=_WAN3_PRICE_SOURCE,
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.MEDIA,
        returns_actual_prompt=False,
        bills_input_video=True,
        source=_WAN3_SOURCE,
    ),
    # --- reference-to-video on the old protocol -----------------------------------------------------------------------
    WanModel(
        name="wan2.6-r2v",
        family=Family.REFERENCE_TO_VIDEO,
        sizes=_sizes("720P", "1080P"),
        default_size="1920*1080",
        durations=tuple(range(2, 11)),
        prompt_max_chars=1500,
        supports_audio=True,
        supports_shot_type=True,
        prices_usd={"720P": 0.10, "1080P": 0.15},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.WAN26,
        returns_actual_prompt=False,
        bills_input_video=True,
        source="official reference-to-video API reference (Jan-Mar 2026)",
    ),
    WanModel(
        name="wan2.6-r2v-flash",
        family=Family.REFERENCE_TO_VIDEO,
        sizes=_sizes("720P", "1080P"),
        default_size="1920*1080",
        durations=tuple(range(2, 11)),
        prompt_max_chars=1500,
        supports_audio=True,
        supports_shot_type=True,
        prices_usd={"720P": 0.05, "1080P": 0.075},
        silent_prices_usd={"720P": 0.025, "1080P": 0.0375},
        max_concurrent_tasks=5,
        create_rps=5,
        usage_style=UsageStyle.WAN26,
        returns_actual_prompt=False,
        bills_input_video=True,
        source="official reference-to-video API reference (Jan-Mar 2026)",
    ),
    # --- VACE, speech-to-video, animate ------------------------------------------------------------------------------
    WanModel(
        name="wan2.1-vace-plus",
        family=Family.VACE,
        sizes=_sizes("720P"),
        default_size="1280*720",
        functions={
            "image_reference": ("ref_images_url",),
            "video_repainting": ("video_url", "control_condition"),
            "video_edit": ("video_url",),
            "video_extension": (),
            "video_outpainting": ("video_url",),
        },
        function_max_ref_images={"video_repainting": 1},
        function_control_conditions={"video_edit": ("posebodyface", "depth")},
        function_needs_with_video={"video_extension": ("control_condition",)},
        max_background_images=1,
        price_source="no price found; set one, see the cost docs",
        usage_style=UsageStyle.STANDARD_RATIO,
        aliases=("wanx2.1-vace-plus",),
        source="official video-editing (VACE) guide (docs.qwencloud.com)",
    ),
    WanModel(
        name="wan2.2-s2v",
        family=Family.SPEECH_TO_VIDEO,
        resolutions=("480P", "720P"),
        default_resolution="480P",
        # the video is as long as the audio (under 20 s): no duration parameter; 20 s bounds the estimate
        durations=(),
        default_duration=20,
        supports_audio_url=True,
        prices_usd={"480P": 0.071677, "720P": 0.129018},
        price_source="official wan-s2v API reference (USD)",
        max_concurrent_tasks=1,
        create_rps=5,
        usage_style=UsageStyle.STANDARD_RATIO,
        source="official wan-s2v API reference (Oct 2025 - Mar 2026); Beijing region only",
    ),
    WanModel(
        name="wan2.2-animate-move",
        family=Family.ANIMATE,
        durations=(),
        default_duration=30,
        modes=("wan-std", "wan-pro"),
        price_source="no price found; set one, see the cost docs",
        max_concurrent_tasks=1,
        create_rps=5,
        usage_style=UsageStyle.STANDARD_RATIO,
        source="official wan-animate-move API reference",
    ),
    WanModel(
        name="wan2.2-animate-mix",
        family=Family.ANIMATE,
        durations=(),
        default_duration=30,
        modes=("wan-std", "wan-pro"),
        price_source="no price found; set one, see the cost docs",
        max_concurrent_tasks=1,
        create_rps=5,
        usage_style=UsageStyle.STANDARD_RATIO,
        source="official wan-animate-mix API reference",
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


def model_name_problem(name: str) -> str | None:
    """
    Why a model name the catalogue lacks looks like a slip of a known one (None for a known or a truly new name).

    DashScope refuses an unknown model for free, but a near miss of a known name is almost always a typo, and the
    answer would come only after the media were checked and uploaded. Three rules, in order:

    * the same as a catalogue name but for case or spaces (``Wan2.5-T2V-Preview``, ``wan2.5-t2v -preview``);
    * a name that differs from a catalogue name only in its digits (``wan2.8-t2v``) is taken as a new version: sent;
    * otherwise close to a catalogue name (difflib ratio >= 0.85, e.g. ``wan2.5-t2v-previw``): a slip.
    """
    if name in MODELS:
        return None
    squeezed = "".join(name.split()).lower()
    for known in MODELS:
        if squeezed == known:
            return f"{name!r} differs from the catalogue's {known!r} only by case or spaces; did you mean {known!r}?"

    def shape(text: str) -> str:
        return re.sub(r"[0-9]+", "#", text)

    if any(shape(squeezed) == shape(known) for known in MODELS):
        return None
    close = difflib.get_close_matches(squeezed, list(MODELS), n=1, cutoff=0.85)
    if close:
        return f"{name!r} is not a known Wan model; did you mean {close[0]!r}?"
    return None


def models_of(family: Family) -> list[str]:
    """Canonical names of the catalogue's models of one family, for error messages and docs."""
    return [m.name for m in _CATALOGUE if m.family is family]


def resolution_tier(model: WanModel, size: str | None = None, resolution: str | None = None) -> str:
    """The price tier (480P/720P/1080P) a request lands in, defaults applied."""
    if model.sizes:
        size = size or model.default_size
        for tier, sizes in SIZE_TIERS.items():
            if size in sizes:
                return tier
        raise ValueError(f"size {size!r} is in no resolution tier")
    return (resolution or model.default_resolution or "").upper()


def output_dimensions(
    model: WanModel, size: str | None = None, resolution: str | None = None, ratio: str | None = None
) -> tuple[int, int]:
    """Width and height of the video a request produces (by tier and ratio; default: the tier's landscape size)."""
    if model.sizes:
        width, height = (size or model.default_size or "").split("*")
        return int(width), int(height)
    tier = resolution_tier(model, resolution=resolution) or "720P"
    long_side, short_side = _TIER_DEFAULT_DIMENSIONS.get(tier, (1280, 720))
    if ratio in (None, "", "16:9", "adaptive"):
        return long_side, short_side
    a, _, b = ratio.partition(":")
    w, h = int(a), int(b)
    # same pixel count as the tier's 16:9 size, sides rounded to a multiple of 16
    area = long_side * short_side
    width = round((area * w / h) ** 0.5 / 16) * 16
    height = round((area * h / w) ** 0.5 / 16) * 16
    return width, height


def estimate_cost_usd(
    model: WanModel,
    *,
    size: str | None = None,
    resolution: str | None = None,
    duration: int | None = None,
    audio: bool | None = None,
    audio_url: str | None = None,
    input_video_seconds: float = 0.0,
    prices: Mapping[str, float] | None = None,
) -> float | None:
    """
    Estimated price of one generation in USD: price per second of the tier x seconds billed.

    Seconds billed: the output's duration (for Wan 3.0's ``-1`` and video editing's ``0`` the longest the model
    makes, an upper bound), plus ``input_video_seconds`` on models that bill input video (r2v reference videos,
    Wan 3.0). ``prices`` (tier -> USD per second) overrides the catalogue's list (see :func:`price_overrides`).
    Failed tasks are free, so this is the price of success. None when there is no price for the tier.
    """
    tier = resolution_tier(model, size, resolution)
    table = model.prices_usd
    # audio defaults to on where it is supported; the silent price applies only when it is explicitly off
    if model.silent_prices_usd and audio is False and not audio_url:
        table = model.silent_prices_usd
    price = (prices or {}).get(tier, table.get(tier))
    if price is None:
        return None
    seconds = duration if duration is not None else model.default_duration
    if seconds is not None and seconds <= 0:
        seconds = max((d for d in model.durations if d > 0), default=model.default_duration)
    billed = (seconds or model.default_duration) + (input_video_seconds if model.bills_input_video else 0.0)
    cost = price * billed
    # a price too big for a number (1e308 per second, for 5 s) is no estimate: infinity would fail every JSON it reached
    return round(cost, 4) if math.isfinite(cost) else None


def request_cost_usd(
    model: WanModel,
    input_: Mapping[str, Any],
    parameters: Mapping[str, Any],
    prices: Mapping[str, float] | None = None,
) -> float | None:
    """
    Estimated price in USD of a create request's final ``input`` and ``parameters`` (extras included), the body
    exactly as it goes out. None when there is no price, or the body's values are not the model's.
    """
    duration = parameters.get("duration")
    audio = parameters.get("audio")
    try:
        return estimate_cost_usd(
            model,
            size=parameters.get("size") if model.sizes else None,
            resolution=parameters.get("resolution"),
            duration=duration if isinstance(duration, int) and not isinstance(duration, bool) else None,
            audio=audio if isinstance(audio, bool) else None,
            audio_url=input_.get("audio_url"),
            prices=prices,
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def price_overrides(*sources: Any) -> dict[str, dict[str, float]]:
    """
    User prices that replace the catalogue's: ``{"model": {"720P": 0.1, ...}}``, merged from ``sources`` in order
    (later wins). Each source is a dict or its JSON text (the connection extra ``prices``, or ``[wan] prices`` in
    the Airflow config); anything malformed raises ValueError naming the entry.
    """
    import json

    merged: dict[str, dict[str, float]] = {}
    for source in sources:
        if source in (None, "", {}):
            continue
        table = json.loads(source) if isinstance(source, str) else source
        if not isinstance(table, Mapping):
            raise ValueError(f"prices must be a JSON object of model -> {{tier: USD per second}}, got {table!r}")
        for name, tiers in table.items():
            if not isinstance(tiers, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf for v in tiers.values()
            ):
                raise ValueError(
                    f"prices[{name!r}] must map tiers (480P, 720P, 1080P) to USD per second (finite numbers, 0 or more)"
                )
            merged.setdefault(name, {}).update({str(k).upper(): float(v) for k, v in tiers.items()})
    return merged


def cost_from_usage(
    model_name: str | None, usage: Mapping[str, Any], prices: Mapping[str, float] | None = None
) -> float | None:
    """
    Estimated price in USD of a finished task from its ``usage`` (the catalogue's list price x seconds).

    ``usage`` differs between model generations: ``output_video_duration`` / ``video_duration`` / ``duration`` for
    the seconds, ``size`` or a ``W*H`` ``video_ratio`` for text-to-video, ``SR`` (480, 720, 1080) for the tier;
    ``input_video_duration`` is added on models that bill input video (Wan 3.0, r2v).
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
    input_seconds = usage.get("input_video_duration")
    if not isinstance(input_seconds, (int, float)) or isinstance(input_seconds, bool):
        input_seconds = 0
    try:
        return estimate_cost_usd(
            model,
            size=size if model.sizes else None,
            resolution=resolution,
            duration=duration,
            input_video_seconds=float(input_seconds),
            prices=prices,
        )
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
