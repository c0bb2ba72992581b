"""
The request schema: one table of the fields a Wan create request can carry.

Each :class:`Field` row says where the field goes in the body (``input`` or ``parameters``), its type and limits,
which models accept it and where its default comes from. The validator (:func:`validate_request`), the operators'
request building (:func:`place`), the simulator and the docs all read this table; the per-model facts the rows
refer to (allowed sizes, durations, media counts, ...) live in the catalogue (:mod:`airflow_provider_wan.models`).

Adding a parameter is one row here; adding a model is one catalogue entry there.

Media (images, audio, video) have their own small table, :data:`MEDIA_SPECS`: what a reference may be (formats,
bytes, pixels, seconds). :func:`media_references` walks a body and yields every media reference with its spec,
which is how local files and ``gs://`` objects are found, checked and uploaded (:mod:`airflow_provider_wan.media`).

Pure data and functions, no Airflow import.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_wan.models import (
    _CATALOGUE,
    SEED_MAX,
    SHOT_TYPES,
    Family,
    Problem,
    WanModel,
)
from airflow_provider_wan.redact import redact_text

__all__ = [
    "FIELDS",
    "MEDIA_SPECS",
    "MEDIA_TYPE_SPECS",
    "Field",
    "Kind",
    "MediaRef",
    "MediaSpec",
    "Where",
    "accepts",
    "field_named",
    "is_remote",
    "media_references",
    "parse_int",
    "parse_value",
    "place",
    "plain_text",
    "text_problem",
    "validate_references",
    "validate_request",
    "validate_texts",
    "validate_unknown_model_request",
]


class Where(str, Enum):
    """Which object of the create body a field belongs to."""

    INPUT = "input"
    PARAMETERS = "parameters"


class Kind(str, Enum):
    """A field's type."""

    TEXT = "text"
    INT = "int"
    NUMBER = "number"
    BOOL = "bool"
    CHOICE = "choice"
    CHOICES = "choices"  # a list of choices
    MEDIA = "media"  # one media reference (URL, oss://, or a local path / gs:// object we upload)
    MEDIA_LIST = "media_list"  # a list of media references
    MEDIA_ITEMS = "media_items"  # the ``input.media`` list of {type, url, ...} objects


@dataclass(frozen=True)
class MediaSpec:
    """What one media reference may be. Sizes in bytes, sides in pixels, durations in seconds."""

    kind: str  # image, audio, video, image_or_video, file
    formats: tuple[str, ...]
    max_bytes: int
    min_side: int | None = None
    max_side: int | None = None
    seconds: tuple[float, float] | None = None
    #: ``data:`` URIs are accepted for images only (audio and video must be URLs or uploads)
    data_uri: bool = False

    def describe(self) -> str:
        parts = [f"{self.kind.replace('_', ' or ')} ({', '.join(self.formats)})", f"at most {_mb(self.max_bytes)}"]
        if self.min_side and self.max_side:
            parts.append(f"sides within [{self.min_side}, {self.max_side}] px")
        if self.seconds:
            parts.append(f"{self.seconds[0]:g}-{self.seconds[1]:g} s")
        return ", ".join(parts)

    def extensions(self) -> tuple[str, ...]:
        return tuple(ext for f in self.formats for ext in _EXTENSIONS.get(f, (f".{f.lower()}",)))


def _mb(n: int) -> str:
    return f"{n // 1_048_576} MB"


_EXTENSIONS = {"JPEG": (".jpg", ".jpeg"), "MP4": (".mp4", ".m4v")}


_IMG = ("JPEG", "PNG", "BMP", "WEBP")
#: image inputs of the old-protocol i2v and kf2v models (kf2v limits: consistent third-party restatements)
LEGACY_IMAGE = MediaSpec("image", _IMG, 10 * 1_048_576, 360, 2000, data_uri=True)
#: images of the media protocol (wan2.7 r2v reference: 240-8000 px, <= 20 MB)
MEDIA_IMAGE = MediaSpec("image", _IMG, 20 * 1_048_576, 240, 8000, data_uri=True)
AUDIO = MediaSpec("audio", ("WAV", "MP3"), 15 * 1_048_576, seconds=(3, 30))
VOICE = MediaSpec("audio", ("WAV", "MP3"), 15 * 1_048_576, seconds=(1, 10))
VIDEO = MediaSpec("video", ("MP4", "MOV"), 100 * 1_048_576, seconds=(1, 30))
CLIP = MediaSpec("video", ("MP4", "MOV"), 100 * 1_048_576, seconds=(2, 10))
ANIMATE_IMAGE = MediaSpec("image", _IMG, 5 * 1_048_576, 200, 4096, data_uri=True)
ANIMATE_VIDEO = MediaSpec("video", ("MP4", "AVI", "MOV"), 200 * 1_048_576, seconds=(2, 30))
REFERENCE = MediaSpec("image_or_video", (*_IMG, "MP4", "MOV"), 100 * 1_048_576, data_uri=True)
DOCUMENT = MediaSpec("file", ("PDF", "DOCX", "TXT", "MD"), 100 * 1_048_576)

#: ``input.media`` item type -> what its ``url`` may be
MEDIA_TYPE_SPECS: dict[str, MediaSpec] = {
    "first_frame": MEDIA_IMAGE,
    "last_frame": MEDIA_IMAGE,
    "reference_image": MEDIA_IMAGE,
    "reference_video": VIDEO,
    "reference_audio": MediaSpec("audio", ("WAV", "MP3"), 15 * 1_048_576, seconds=(1, 15)),
    "driving_audio": AUDIO,
    "first_clip": CLIP,
    "video": VIDEO,
    "file": DOCUMENT,
}
#: media item fields that carry a reference of their own (a voice for a reference image or video)
MEDIA_ITEM_REFERENCES = {"reference_voice": VOICE}
MEDIA_ITEM_TEXTS = ("reference_description",)


def _flag(attribute: str) -> Callable[[WanModel], bool]:
    return lambda model: bool(getattr(model, attribute))


def _families(*families: Family) -> Callable[[WanModel], bool]:
    return lambda model: model.family in families


def _old(*families: Family) -> Callable[[WanModel], bool]:
    """Models of these families on the old (named fields) protocol."""
    return lambda model: model.family in families and not model.uses_media


def _all(model: WanModel) -> bool:
    return True


_PROMPTED = (
    Family.TEXT_TO_VIDEO,
    Family.IMAGE_TO_VIDEO,
    Family.KEYFRAME_TO_VIDEO,
    Family.REFERENCE_TO_VIDEO,
    Family.VIDEO_EDIT,
    Family.ALL_IN_ONE,
    Family.VACE,
    Family.SPEECH_TO_VIDEO,
)


@dataclass(frozen=True)
class Field:
    """
    One request field.

    :param name: DashScope's name, which is also the operators' keyword
    :param where: ``input`` or ``parameters``
    :param kind: the type
    :param doc: one line for the docs and error messages
    :param accepted: which models take it (a predicate over the catalogue entry)
    :param allowed: the catalogue attribute holding the allowed values (choices, durations), or the values
    :param limit: the catalogue attribute holding a text's maximum length
    :param bounds: (low, high) of a number; a catalogue attribute name for ``low`` is allowed (seed)
    :param media: what a media reference may be
    :param count: (fewest, most) items of a list
    :param default: the catalogue attribute holding the default (docs, simulator, cost), or None
    :param instead: the field to use instead on the models that do not take this one (size <-> resolution)
    """

    name: str
    where: Where
    kind: Kind
    doc: str
    accepted: Callable[[WanModel], bool] = _all
    allowed: str | tuple[Any, ...] | None = None
    limit: str | None = None
    bounds: tuple[Any, float] | None = None
    media: MediaSpec | None = None
    count: tuple[int, int] | None = None
    default: str | None = None
    instead: str | None = None

    def allowed_values(self, model: WanModel) -> tuple[Any, ...]:
        if isinstance(self.allowed, str):
            return tuple(getattr(model, self.allowed))
        return tuple(self.allowed or ())

    def low(self, model: WanModel) -> float:
        assert self.bounds is not None
        low = self.bounds[0]
        return float(getattr(model, low)) if isinstance(low, str) else float(low)


IN, PA = Where.INPUT, Where.PARAMETERS

#: THE table. Order is the order of the docs.
FIELDS: tuple[Field, ...] = (
    # --- input: texts ----------------------------------------------------------------------------------------------
    Field("prompt", IN, Kind.TEXT, "what the video shows", _families(*_PROMPTED), limit="prompt_max_chars"),
    Field(
        "negative_prompt",
        IN,
        Kind.TEXT,
        "what the video should not show",
        _families(*_PROMPTED),
        limit="negative_prompt_max_chars",
    ),
    Field("template", IN, Kind.TEXT, "video-effect template name (wan2.1)", _flag("supports_template")),
    # --- input: the old protocol's media fields ---------------------------------------------------------------------
    Field("img_url", IN, Kind.MEDIA, "the first frame", _old(Family.IMAGE_TO_VIDEO), media=LEGACY_IMAGE),
    Field(
        "first_frame_url",
        IN,
        Kind.MEDIA,
        "the first frame",
        _families(Family.KEYFRAME_TO_VIDEO, Family.VACE),
        media=LEGACY_IMAGE,
    ),
    Field(
        "last_frame_url",
        IN,
        Kind.MEDIA,
        "the last frame",
        _families(Family.KEYFRAME_TO_VIDEO, Family.VACE),
        media=LEGACY_IMAGE,
    ),
    Field("audio_url", IN, Kind.MEDIA, "audio to follow (wav or mp3)", _flag("supports_audio_url"), media=AUDIO),
    Field(
        "reference_urls",
        IN,
        Kind.MEDIA_LIST,
        "reference images and videos, called character1, character2, ... in the prompt",
        _old(Family.REFERENCE_TO_VIDEO),
        media=REFERENCE,
        count=(1, 5),
    ),
    Field(
        "image_url",
        IN,
        Kind.MEDIA,
        "the person's image",
        _families(Family.SPEECH_TO_VIDEO, Family.ANIMATE),
        media=ANIMATE_IMAGE,
    ),
    Field("video_url", IN, Kind.MEDIA, "the source video", _families(Family.ANIMATE, Family.VACE), media=ANIMATE_VIDEO),
    # --- input: the media protocol -----------------------------------------------------------------------------------
    Field(
        "media",
        IN,
        Kind.MEDIA_ITEMS,
        "list of {type, url} items: first_frame, last_frame, reference_image, reference_video, ...",
        _flag("uses_media"),
        allowed="media",
    ),
    # --- input: VACE -----------------------------------------------------------------------------------------------
    Field("function", IN, Kind.CHOICE, "the VACE function", _families(Family.VACE), allowed="functions"),
    Field(
        "ref_images_url",
        IN,
        Kind.MEDIA_LIST,
        "reference images (VACE)",
        _families(Family.VACE),
        media=LEGACY_IMAGE,
        count=(1, 3),
    ),
    Field(
        "mask_image_url", IN, Kind.MEDIA, "mask image of the area to edit", _families(Family.VACE), media=LEGACY_IMAGE
    ),
    Field("mask_video_url", IN, Kind.MEDIA, "mask video of the area to edit", _families(Family.VACE), media=VIDEO),
    Field("mask_frame_id", IN, Kind.INT, "frame the mask image belongs to", _families(Family.VACE), bounds=(1, 10_000)),
    Field("first_clip_url", IN, Kind.MEDIA, "clip to continue", _families(Family.VACE), media=CLIP),
    Field("last_clip_url", IN, Kind.MEDIA, "clip to lead into", _families(Family.VACE), media=CLIP),
    # --- parameters --------------------------------------------------------------------------------------------------
    Field(
        "size",
        PA,
        Kind.CHOICE,
        "width*height of the video",
        _flag("sizes"),
        allowed="sizes",
        default="default_size",
        instead="resolution",
    ),
    Field(
        "resolution",
        PA,
        Kind.CHOICE,
        "resolution tier of the video",
        _flag("resolutions"),
        allowed="resolutions",
        default="default_resolution",
        instead="size",
    ),
    Field("ratio", PA, Kind.CHOICE, "aspect ratio", _flag("ratios"), allowed="ratios"),
    Field(
        "duration",
        PA,
        Kind.INT,
        "length in seconds",
        _flag("durations"),
        allowed="durations",
        default="default_duration",
    ),
    Field("prompt_extend", PA, Kind.BOOL, "let DashScope rewrite the prompt", _families(*_PROMPTED)),
    Field("watermark", PA, Kind.BOOL, 'add the "AI Generated" watermark'),
    Field("seed", PA, Kind.INT, "random seed", bounds=("seed_min", SEED_MAX)),
    Field("audio", PA, Kind.BOOL, "add generated audio", _flag("supports_audio")),
    Field(
        "enable_thinking",
        PA,
        Kind.BOOL,
        "plan the shots before generating (agentic prompt enhancement)",
        _families(Family.ALL_IN_ONE),
    ),
    Field("shot_type", PA, Kind.CHOICE, "single or multi-shot", _flag("supports_shot_type"), allowed=SHOT_TYPES),
    Field(
        "audio_setting",
        PA,
        Kind.CHOICE,
        "keep the source audio or make new",
        _flag("audio_settings"),
        allowed="audio_settings",
    ),
    Field("mode", PA, Kind.CHOICE, "standard or pro service", _flag("modes"), allowed="modes"),
    Field(
        "obj_or_bg",
        PA,
        Kind.CHOICES,
        "per reference image: object or background",
        _families(Family.VACE),
        allowed=("obj", "bg"),
    ),
    Field(
        "control_condition",
        PA,
        Kind.CHOICE,
        "feature extracted from the video",
        _families(Family.VACE),
        allowed=("posebodyface", "posebody", "depth", "scribble"),
    ),
    Field("strength", PA, Kind.NUMBER, "how strongly the control applies", _families(Family.VACE), bounds=(0, 1)),
    Field("mask_type", PA, Kind.CHOICE, "how the mask follows", _families(Family.VACE), allowed=("tracking", "fixed")),
    Field("expand_ratio", PA, Kind.NUMBER, "mask expansion", _families(Family.VACE), bounds=(0, 1)),
    Field("expand_mode", PA, Kind.CHOICE, "mask shape", _families(Family.VACE), allowed=("hull", "bbox", "original")),
    Field("top_scale", PA, Kind.NUMBER, "outpainting upwards", _families(Family.VACE), bounds=(1, 2)),
    Field("bottom_scale", PA, Kind.NUMBER, "outpainting downwards", _families(Family.VACE), bounds=(1, 2)),
    Field("left_scale", PA, Kind.NUMBER, "outpainting to the left", _families(Family.VACE), bounds=(1, 2)),
    Field("right_scale", PA, Kind.NUMBER, "outpainting to the right", _families(Family.VACE), bounds=(1, 2)),
)
del IN, PA

_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
#: every media spec a field refers to, by field name (the docs list them)
MEDIA_SPECS: dict[str, MediaSpec] = {f.name: f.media for f in FIELDS if f.media is not None}
#: references DashScope fetches or decodes itself; anything else is a local path or an object-store URI we upload
_REMOTE_PREFIXES = ("http://", "https://", "data:", "oss://")


def field_named(name: str) -> Field | None:
    return _BY_NAME.get(name)


def accepts(model: WanModel, name: str) -> bool:
    row = _BY_NAME.get(name)
    return row is not None and row.accepted(model)


def is_remote(value: str) -> bool:
    """True for references sent as they are (http(s), data: and oss:// URIs)."""
    return value.startswith(_REMOTE_PREFIXES)


def place(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Split named values into the body's ``input`` and ``parameters`` by the table (None values dropped).

    :raises KeyError: for a name the table does not know (the caller says which extra dict to use)
    """
    input_: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        (input_ if _BY_NAME[name].where is Where.INPUT else parameters)[name] = value
    return input_, parameters


@dataclass(frozen=True)
class MediaRef:
    """One media reference inside a body: a label for messages, its value, its spec and where to write it back."""

    parameter: str
    value: str
    spec: MediaSpec
    #: the body's object or list holding it: out of the repr, as the body's other fields may be signed links (the
    #: operator keeps its local files' refs, and OpenLineage's full task info writes them by their repr)
    container: Any = field(repr=False)
    key: Any = field(repr=False)

    def replace(self, value: str) -> None:
        self.container[self.key] = value


def media_references(input_: dict[str, Any]) -> Iterator[MediaRef]:
    """Every media reference of an ``input`` object (old fields, lists and the media list), in body order."""
    for name, value in input_.items():
        row = _BY_NAME.get(name)
        if row is None:
            continue
        if row.kind is Kind.MEDIA and isinstance(value, str) and row.media is not None:
            yield MediaRef(name, value, row.media, input_, name)
        elif row.kind is Kind.MEDIA_LIST and isinstance(value, list) and row.media is not None:
            for index, item in enumerate(value):
                if isinstance(item, str):
                    yield MediaRef(f"{name}[{index}]", item, row.media, value, index)
        elif row.kind is Kind.MEDIA_ITEMS and isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                spec = MEDIA_TYPE_SPECS.get(str(item.get("type")))
                url = item.get("url")
                if spec is not None and isinstance(url, str):
                    yield MediaRef(f"media[{index}] ({item.get('type')})", url, spec, item, "url")
                for sub, sub_spec in MEDIA_ITEM_REFERENCES.items():
                    if isinstance(item.get(sub), str):
                        yield MediaRef(f"media[{index}].{sub}", item[sub], sub_spec, item, sub)


# --- validation ----------------------------------------------------------------------------------------------------
_ASCII_INT = re.compile(r"\s*-?[0-9]+\s*", re.ASCII)
#: what is not plain text: a control character (Unicode category Cc) other than newline and tab (a carriage return
#: only before a newline: Windows line ends), or an unpaired surrogate
_NOT_PLAIN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]|\r(?!\n)")


def parse_int(value: Any) -> Any:
    """
    A templated number ("42") as an int; anything else unchanged, for the validator to refuse by name.

    ASCII digits only: ``"５"`` (fullwidth) or ``"٣"`` (Arabic-Indic) pass ``str.isdigit()`` and ``int()``, but
    nobody types them meaning a duration or a seed, so they stay strings and are refused.
    """
    if isinstance(value, str) and _ASCII_INT.fullmatch(value):
        return int(value)
    return value


#: a decimal number as a template renders it: "0.5", "-1", "2." is not one
_ASCII_NUMBER = re.compile(r"\s*-?[0-9]+(?:\.[0-9]+)?\s*", re.ASCII)


#: a bool as a template renders it: Jinja writes Python's True as "True"; JSON's spelling is taken too
_BOOLS = {"True": True, "true": True, "False": False, "false": False}


def parse_value(row: Field, value: Any) -> Any:
    """
    A templated value of a number or true/false field as what it says: Jinja renders ``{{ params.duration }}`` as
    the text "5", so an int field's text of ASCII digits becomes an int (:func:`parse_int`), a number field's
    decimal text a float, a true/false field's "True"/"true" (or "False"/"false") a bool. Anything else is returned
    unchanged, for the validator to refuse by name.
    """
    if row.kind is Kind.INT:
        return parse_int(value)
    if row.kind is Kind.NUMBER and isinstance(value, str) and _ASCII_NUMBER.fullmatch(value):
        return float(value)
    if row.kind is Kind.BOOL and isinstance(value, str) and value.strip() in _BOOLS:
        return _BOOLS[value.strip()]
    return value


def text_problem(value: str) -> str | None:
    """
    What makes a text unsendable, or None: an unpaired surrogate (not text: it cannot be encoded as UTF-8, and
    breaks whatever reads the task afterwards), NUL or another control character. Newline and tab are allowed, and
    a carriage return before a newline (Windows line ends).
    """
    found = _NOT_PLAIN.search(value)
    if found is None:
        return None
    position, code = found.start(), ord(found.group()[0])
    if 0xD800 <= code <= 0xDFFF:
        return f"holds an unpaired surrogate (U+{code:04X}) at character {position}: not valid Unicode text"
    return (
        f"holds the control character U+{code:04X} at character {position}; allowed are printable text, "
        "newlines and tabs"
    )


def plain_text(value: str) -> str:
    """``value`` with every character :func:`text_problem` refuses replaced by a space: a text DashScope sent back."""
    return _NOT_PLAIN.sub(" ", value)


def validate_texts(name: str, input_: Mapping[str, Any]) -> list[Problem]:
    """
    The table's texts (prompt, negative prompt, ...) and the media items' (``reference_description``) must be plain
    text: see :func:`text_problem`.

    The operators' rule, not DashScope's (it takes and bills such a prompt, then the text breaks what reads the task
    afterwards): the simulator, which answers as DashScope does, does not apply it.
    """
    texts: list[tuple[str, Any]] = []
    for key, value in input_.items():
        row = _BY_NAME.get(key)
        if row is not None and row.kind is Kind.TEXT:
            texts.append((key, value))
        elif row is not None and row.kind is Kind.MEDIA_ITEMS and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    texts.extend((f"media[{index}].{text}", item.get(text)) for text in MEDIA_ITEM_TEXTS)
    problems = []
    for label, text in texts:
        problem = text_problem(text) if isinstance(text, str) else None
        if problem is not None:
            problems.append(Problem(label, f"{problem}; {name} takes plain text"))
    return problems


def validate_references(name: str, input_: dict[str, Any]) -> list[Problem]:
    """
    Media references nothing can fetch (see :func:`_reference_problem`), which would otherwise go to DashScope in a
    paid create. The operators' rule, like :func:`validate_texts`: the simulator does not apply it.
    """
    problems = []
    for ref in media_references(input_):
        if not ref.value.startswith("data:") and (problem := _reference_problem(ref.value)) is not None:
            problems.append(
                Problem(ref.parameter, f"{_shorten(ref.value)!r} {problem}; {name} takes: {ref.spec.describe()}")
            )
    return problems


def validate_unknown_model_request(
    name: str, input_: Mapping[str, Any], parameters: Mapping[str, Any]
) -> list[Problem]:
    """
    The checks that hold whatever the model, for a model the catalogue does not know: the table's texts are plain
    text (:func:`validate_texts`), its whole numbers are whole numbers. :func:`validate_request` checks the
    numbers (and the model's own rules) for a catalogue model.
    """
    problems = validate_texts(name, input_)
    for key, value in parameters.items():
        row = _BY_NAME.get(key)
        if row is not None and row.where is Where.PARAMETERS and row.kind is Kind.INT and not _is_int(value):
            problems.append(
                Problem(key, f"{_shown(value)} is not a whole number for {name}; write it with the ASCII digits 0-9")
            )
    return problems


def _digits(value: Any) -> str:
    """What a whole number given as something else should be: text of digits, an int rather than a float or bool."""
    if isinstance(value, str):
        return " (written with the ASCII digits 0-9)"
    if isinstance(value, bool | float):
        return f" (an int, not a {type(value).__name__})"
    return ""


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, redacted and cut (a 10 MB text is not echoed whole)."""
    return _shorten(repr(value), 80)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def _durations(durations: tuple[int, ...]) -> str:
    head = [d for d in durations if d < 2]
    run = [d for d in durations if d >= 2]
    if len(run) > 3 and run == list(range(run[0], run[-1] + 1)):
        text = f"{run[0]}-{run[-1]} (whole seconds)"
        return _list([*head, text]) if head else text
    return _list(durations)


def _shorten(value: Any, limit: int = 60) -> str:
    """A value for an error message: a URL's query string (a signed URL's signature: a secret) redacted, then cut."""
    text = redact_text(str(value)[: limit * 4])
    return text if len(text) <= limit else text[:limit] + "..."


def models_accepting(name: str) -> list[str]:
    """Canonical names of the catalogue's models that take field ``name``."""
    row = _BY_NAME[name]
    return [m.name for m in _CATALOGUE if row.accepted(m)]


def _reference_problem(value: str) -> str | None:
    """
    What makes a reference unusable wherever it points, or None: whitespace at an end (a template's line break) or
    a control character, which no URL or sensible path holds; an http(s) URL without a host; an empty oss:// URL.
    Such a URL would reach DashScope, which cannot fetch it, in a paid create.
    """
    if value != value.strip():
        return "starts or ends with whitespace (a line break from a template?)"
    control = next((i for i, char in enumerate(value) if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        return f"holds the control character U+{ord(value[control]):04X} at character {control}"
    if value[:8].lower().startswith(("http://", "https://")):
        try:
            host = urlsplit(value).hostname
        except ValueError:
            return "is not a valid URL"
        if not host:
            return "names no host"
    elif value.startswith("oss://") and not value[len("oss://") :].strip("/"):
        return "names no object"
    return None


def _check_reference(
    problems: list[Problem], parameter: str, value: Any, spec: MediaSpec, model: str, local_ok: bool
) -> None:
    """A media reference's shape (a local file itself is checked when it is read, see media.py)."""
    what = spec.describe()
    sources = "an http(s) URL, an oss:// URL" + (", a data:image/ URI" if spec.data_uri else "")
    if local_ok:
        sources += ", a local path or a gs:// URI"
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(parameter, f"must be {sources}; {model} takes: {what}"))
    elif value.startswith("data:") and not (spec.data_uri and value.startswith("data:image/")):
        problems.append(Problem(parameter, f"{_shorten(value)!r} is not accepted by {model}: give {sources}; {what}"))
    elif not local_ok and not is_remote(value):
        problems.append(Problem(parameter, f"must be {sources}, got {_shorten(value)!r}; {model} takes: {what}"))
    elif value[:8].lower().startswith(("http://", "https://")):  # the head only: a data: URI may be MBs
        last = value.split("?", 1)[0].rsplit("/", 1)[-1].lower()
        if "." in last and not last.endswith(spec.extensions()):
            problems.append(Problem(parameter, f"must point to: {what}, got {_shorten(value)!r} ({model})"))


def _check_value(problems: list[Problem], row: Field, value: Any, model: WanModel, local_ok: bool) -> None:
    name, label = model.name, row.name
    kind = row.kind
    if kind is Kind.TEXT:
        if not isinstance(value, str):
            problems.append(Problem(label, f"must be a string, got {type(value).__name__}"))
        elif row.limit and len(value) > getattr(model, row.limit):
            problems.append(
                Problem(
                    label,
                    f"is {len(value)} characters; {name} allows at most {getattr(model, row.limit)} "
                    "(DashScope silently truncates the rest)",
                    truncation=True,
                )
            )
        elif label == "template" and not value.strip():
            problems.append(Problem(label, "must be a non-empty template name"))
    elif kind is Kind.BOOL:
        if not isinstance(value, bool):
            problems.append(Problem(label, f"must be true or false, got {_shown(value)}"))
    elif kind is Kind.INT:
        allowed = row.allowed_values(model)
        if allowed:
            if not _is_int(value) or value not in allowed:
                shown = (_durations(allowed) if label == "duration" else _list(allowed)) + _digits(value)
                problems.append(Problem(label, f"{_shown(value)} is not allowed for {name}; allowed seconds: {shown}"))
        elif row.bounds is not None:
            low, high = int(row.low(model)), int(row.bounds[1])
            if not _is_int(value) or not low <= value <= high:
                problems.append(
                    Problem(
                        label,
                        f"{_shown(value)} is out of range for {name}; allowed: an integer in [{low}, {high}]"
                        + _digits(value),
                    )
                )
    elif kind is Kind.NUMBER:
        assert row.bounds is not None
        lowest, highest = row.low(model), row.bounds[1]
        if not _is_number(value) or not lowest <= value <= highest:
            problems.append(
                Problem(
                    label, f"{_shown(value)} is out of range for {name}; allowed: a number in [{lowest:g}, {highest:g}]"
                )
            )
    elif kind is Kind.CHOICE:
        allowed = row.allowed_values(model)
        if value not in allowed:
            unit = " (width*height)" if label == "size" else ""
            problems.append(
                Problem(label, f"{_shown(value)} is not allowed for {name}; allowed: {_list(allowed)}{unit}")
            )
    elif kind is Kind.CHOICES:
        allowed = row.allowed_values(model)
        if not isinstance(value, list) or not all(v in allowed for v in value):
            problems.append(
                Problem(label, f"{_shown(value)} is not allowed for {name}; allowed: a list of {_list(allowed)}")
            )
    elif kind is Kind.MEDIA:
        assert row.media is not None
        _check_reference(problems, label, value, row.media, name, local_ok)
    elif kind is Kind.MEDIA_LIST:
        assert row.media is not None
        assert row.count is not None
        low, high = row.count
        if not isinstance(value, list) or not low <= len(value) <= high:
            got = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
            problems.append(Problem(label, f"{name} takes a list of {low}-{high} references; got {got}"))
            return
        for index, item in enumerate(value):
            _check_reference(problems, f"{label}[{index}]", item, row.media, name, local_ok)
    elif kind is Kind.MEDIA_ITEMS:
        _check_media_items(problems, value, model, local_ok)


def _check_media_items(problems: list[Problem], items: Any, model: WanModel, local_ok: bool) -> None:
    name = model.name
    allowed = model.media
    if not isinstance(items, list) or not items:
        problems.append(
            Problem("media", f"{name} takes a non-empty list of {{type, url}} items; types: {_list(allowed)}")
        )
        return
    counts: dict[str, int] = {}
    for index, item in enumerate(items):
        label = f"media[{index}]"
        if not isinstance(item, dict):
            problems.append(Problem(label, f"must be an object with type and url, got {type(item).__name__}"))
            continue
        kind = str(item.get("type"))
        if kind == "link" and "link" in allowed:
            counts[kind] = counts.get(kind, 0) + 1
            url = item.get("url")
            if not (isinstance(url, str) and url.lower().startswith(("http://", "https://"))):
                problems.append(Problem(f"{label} (link)", f"must be an http(s) URL, got {_shorten(url)!r}"))
            continue
        if kind not in allowed:
            problems.append(
                Problem(f"{label}.type", f"{kind!r} is not a media type of {name}; allowed: {_list(allowed)}")
            )
            continue
        counts[kind] = counts.get(kind, 0) + 1
        _check_reference(problems, f"{label} ({kind})", item.get("url"), MEDIA_TYPE_SPECS[kind], name, local_ok)
        for extra in set(item) - {"type", "url"}:
            if extra in MEDIA_ITEM_REFERENCES:
                if kind not in ("reference_image", "reference_video") or not model.reference_voices:
                    problems.append(
                        Problem(
                            f"{label}.{extra}",
                            f"{name} takes a reference_voice only on reference_image and reference_video items",
                        )
                    )
                else:
                    _check_reference(
                        problems, f"{label}.{extra}", item[extra], MEDIA_ITEM_REFERENCES[extra], name, local_ok
                    )
            elif extra in MEDIA_ITEM_TEXTS:
                if not isinstance(item[extra], str):
                    problems.append(Problem(f"{label}.{extra}", "must be a string"))
            else:
                problems.append(
                    Problem(
                        f"{label}.{extra}",
                        f"is not a field of a media item; allowed: type, url, "
                        f"{_list([*MEDIA_ITEM_REFERENCES, *MEDIA_ITEM_TEXTS])}",
                    )
                )
    for kind, n in counts.items():
        if n > allowed[kind]:
            problems.append(Problem("media", f"{n} {kind} items; {name} takes at most {allowed[kind]}"))
    refs = counts.get("reference_image", 0) + counts.get("reference_video", 0)
    if model.max_references is not None and refs > model.max_references:
        problems.append(
            Problem("media", f"{refs} reference images and videos; {name} takes at most {model.max_references} in all")
        )
    if model.media_required and not any(k in counts for k in model.media_required):
        problems.append(Problem("media", f"{name} needs at least one item of type {' or '.join(model.media_required)}"))
    for a, b in model.media_exclusive:
        if a in counts and b in counts:
            problems.append(Problem("media", f"{a} and {b} cannot be combined on {name}"))
    for a, b in model.media_needs:
        if a in counts and b not in counts:
            problems.append(Problem("media", f"a {a} item needs a {b} item on {name}"))


def _not_accepted(row: Field, model: WanModel) -> str:
    name = model.name
    alternative = _BY_NAME.get(row.instead) if row.instead else None
    if alternative is not None and alternative.accepted(model):
        allowed = alternative.allowed_values(model)
        return f"is not a parameter of {model.family.label} model {name}; use {alternative.name}, one of " + _list(
            allowed
        )
    others = models_accepting(row.name)
    if not others:
        return f"is not a parameter of {name}"
    return f"is not supported by {name}; only {_list(others)}"


def validate_request(
    model: WanModel,
    input_: Mapping[str, Any],
    parameters: Mapping[str, Any],
    *,
    endpoint: str | None = None,
    local_ok: bool = False,
) -> list[Problem]:
    """
    Check a create request's ``input`` and ``parameters`` against one model's rules.

    Returns every problem found (empty when the request is acceptable). Problems flagged ``truncation`` are texts
    DashScope would cut silently rather than refuse: the simulator cuts them, the operators refuse them.
    ``endpoint`` (the create path) is checked when given. ``local_ok``: media references may be local paths or
    ``gs://`` URIs (the operators upload them after this check; DashScope itself only takes URLs). Fields the
    table does not know are not checked (SDK 1.x sends ``input.extend_prompt`` and ``input.function``; a user's
    extra fields go through as given).
    """
    problems: list[Problem] = []
    name = model.name
    if endpoint is not None and endpoint.strip("/") != model.endpoint:
        problems.append(
            Problem(
                "model",
                f"{name} is served at {model.endpoint}, not {endpoint.strip('/')} (url error, please check url!)",
            )
        )
    for where, values in ((Where.INPUT, input_), (Where.PARAMETERS, parameters)):
        for key, value in values.items():
            row = _BY_NAME.get(key)
            if row is None or row.where is not where or value is None:
                continue
            if key == "function" and model.family is not Family.VACE:
                continue  # SDK 1.x always sends input.function = "video-synthesis"
            if not row.accepted(model):
                problems.append(Problem(key, _not_accepted(row, model)))
                continue
            _check_value(problems, row, value, model, local_ok)
    for rule in RULES:
        rule(problems, model, input_, parameters)
    return problems


# --- rules across fields (each a small function of the catalogue entry's data) --------------------------------------
Rule = Callable[[list[Problem], WanModel, Mapping[str, Any], Mapping[str, Any]], None]


#: inputs every old-protocol model of a family requires (a catalogue entry may add more: ``required_inputs``)
FAMILY_REQUIRED: dict[Family, tuple[str, ...]] = {
    Family.IMAGE_TO_VIDEO: ("img_url",),
    Family.KEYFRAME_TO_VIDEO: ("first_frame_url",),
    Family.REFERENCE_TO_VIDEO: ("reference_urls",),
    Family.SPEECH_TO_VIDEO: ("image_url", "audio_url"),
    Family.ANIMATE: ("image_url", "video_url"),
}
#: families whose every model needs a prompt
PROMPT_REQUIRED = (Family.TEXT_TO_VIDEO, Family.REFERENCE_TO_VIDEO, Family.VIDEO_EDIT, Family.VACE, Family.ALL_IN_ONE)


def _prompt_required(problems: list[Problem], model: WanModel, input_: Mapping[str, Any], _: Any) -> None:
    prompt = input_.get("prompt")
    if (model.prompt_required or model.family in PROMPT_REQUIRED) and not (isinstance(prompt, str) and prompt.strip()):
        problems.append(Problem("prompt", f"is required for {model.family.label} model {model.name}"))


def _required_inputs(problems: list[Problem], model: WanModel, input_: Mapping[str, Any], _: Any) -> None:
    family_default = () if model.uses_media else FAMILY_REQUIRED.get(model.family, ())
    for required in (*family_default, *model.required_inputs):
        if input_.get(required) in (None, "", []):
            problems.append(Problem(required, f"is required by {model.name}"))
    # a model that needs no media type (Wan 3.0 also makes videos from text alone) takes no media list too
    if model.media_required and "media" not in input_:
        needed = f", at least one {' or '.join(model.media_required)}"
        problems.append(
            Problem(
                "media",
                f"is required by {model.name}: a list of {{type, url}} items{needed}; types: {_list(model.media)}",
            )
        )


def _last_frame_needs_template(problems: list[Problem], model: WanModel, input_: Mapping[str, Any], _: Any) -> None:
    if model.family is Family.KEYFRAME_TO_VIDEO and input_.get("last_frame_url") is None and not input_.get("template"):
        problems.append(
            Problem(
                "last_frame_url",
                f"is required by {model.name} unless a template is given (with a template only the first frame is "
                "used)",
            )
        )


def _shot_type_needs_extend(problems: list[Problem], model: WanModel, _: Any, parameters: Mapping[str, Any]) -> None:
    if (
        model.supports_shot_type
        and parameters.get("shot_type") in SHOT_TYPES
        and parameters.get("prompt_extend") is False
    ):
        problems.append(
            Problem(
                "shot_type", "takes effect only with prompt_extend=true; set prompt_extend to true or drop shot_type"
            )
        )


def _shorter_with_video(problems: list[Problem], model: WanModel, input_: Mapping[str, Any], parameters: Any) -> None:
    duration = parameters.get("duration")
    if not model.durations_with_video or not _is_int(duration) or duration in model.durations_with_video:
        return
    items = input_.get("media")
    has_video = isinstance(items, list) and any(
        isinstance(i, dict) and i.get("type") in ("reference_video", "video") for i in items
    )
    if has_video:
        problems.append(
            Problem(
                "duration",
                f"{duration} is not allowed for {model.name} with a reference video; allowed seconds: "
                f"{_durations(model.durations_with_video)}",
            )
        )


def _vace_function(problems: list[Problem], model: WanModel, input_: Mapping[str, Any], parameters: Any) -> None:
    if model.family is not Family.VACE:
        return
    function = input_.get("function")
    if function is None:
        problems.append(Problem("function", f"is required by {model.name}; one of {_list(model.functions)}"))
        return
    if not isinstance(function, str) or function not in model.functions:
        return  # the field's own check names it (a list or dict here would be no key to look up)
    name = f"{model.name} function {function}"
    for needed in model.functions[function]:
        if input_.get(needed) is None and parameters.get(needed) is None:
            problems.append(Problem(needed, f"is required by {name}"))
    if input_.get("video_url") is not None:
        for needed in model.function_needs_with_video.get(function, ()):
            if input_.get(needed) is None and parameters.get(needed) is None:
                problems.append(Problem(needed, f"is required by {name} when a video_url is given"))
    references, most = input_.get("ref_images_url"), model.function_max_ref_images.get(function)
    if most is not None and isinstance(references, list) and len(references) > most:
        problems.append(Problem("ref_images_url", f"{len(references)} reference images; {name} takes at most {most}"))
    condition, conditions = parameters.get("control_condition"), model.function_control_conditions.get(function)
    if conditions and condition is not None and condition not in conditions:
        problems.append(
            Problem("control_condition", f"{_shown(condition)} is not allowed for {name}; allowed: {_list(conditions)}")
        )
    marks = parameters.get("obj_or_bg")
    backgrounds = marks.count("bg") if isinstance(marks, list) else 0
    if model.max_background_images is not None and backgrounds > model.max_background_images:
        problems.append(
            Problem(
                "obj_or_bg", f"{backgrounds} images marked bg; {model.name} takes at most {model.max_background_images}"
            )
        )
    if function == "video_edit" and input_.get("mask_image_url") and input_.get("mask_video_url"):
        problems.append(Problem("mask_video_url", "give mask_image_url or mask_video_url, not both"))
    if function == "video_extension" and not any(
        input_.get(k) for k in ("first_frame_url", "last_frame_url", "first_clip_url", "last_clip_url")
    ):
        problems.append(
            Problem(
                "first_clip_url",
                f"{model.name} video_extension needs first_frame_url, last_frame_url, first_clip_url or last_clip_url",
            )
        )


RULES: tuple[Rule, ...] = (
    _prompt_required,
    _required_inputs,
    _last_frame_needs_template,
    _shot_type_needs_extend,
    _shorter_with_video,
    _vace_function,
)
