"""
Submit operators for Wan video generation: text-to-video, image-to-video, first-and-last-frame and the other modes.

Each operator checks its input against the model catalogue and the request schema before any request (bad input
costs nothing and fails at once), checks the cost estimate of the final request against ``max_cost_usd``, creates
one DashScope task and waits for it in the worker or, with ``deferrable=True``, in the triggerer.

Retries and re-runs never pay twice for one request: the retry-safety record
(:mod:`airflow_provider_wan.create_record`) holds the request's fingerprint and a "create in flight" mark before the
create is sent, and the task id as soon as it is known, before XCom or the wait. A later try of the same request
re-attaches to that task; a create whose answer was never stored is a final "outcome unknown" error, never a second
create; a changed request (or a raised ``take``) makes a new task.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_wan.create_record import (
    CreateRecord,
    RecordStore,
    outcome_unknown_error,
    record_store,
    request_fingerprint,
    unknown_task_error,
)
from airflow_provider_wan.exceptions import WanCreateOutcomeUnknownError, WanError, WanInvalidInputError
from airflow_provider_wan.hooks.schedule import LAST_READ_GRACE_SECONDS, check_wait_seconds, task_kind
from airflow_provider_wan.hooks.wan import TaskStatus, WanHook, WanTask
from airflow_provider_wan.lineage import LineageRecord
from airflow_provider_wan.masking import SignedLinkMasking, is_signed_link, unsigned_link, unsigned_links
from airflow_provider_wan.media import LocalMedia, check_local_media, upload_all
from airflow_provider_wan.models import (
    IMAGE2VIDEO_ENDPOINT,
    VIDEO_GENERATION_ENDPOINT,
    Family,
    WanModel,
    get_model,
    model_name_problem,
    models_of,
    request_cost_usd,
)
from airflow_provider_wan.results import WanResult
from airflow_provider_wan.schema import (
    field_named,
    media_references,
    parse_int,
    parse_value,
    place,
    validate_references,
    validate_request,
    validate_texts,
    validate_unknown_model_request,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom key holding the DashScope task id
XCOM_TASK_ID_KEY = "wan_task_id"
#: the trigger gets this much longer than the operator's own timeout, so its timeout event arrives first
DEFER_TIMEOUT_MARGIN = timedelta(minutes=5)


class WanBaseVideoOperator(SignedLinkMasking, BaseOperator):
    """
    Shared base of the Wan submit operators. Parameters keep DashScope's names.

    :param model: Wan model name, e.g. ``wan2.5-t2v-preview``. A model the catalogue does not know is sent with a
        warning and without model-specific checks (new models appear often); a near miss of a known name
        (``Wan2.5-T2V-Preview``, ``wan2.5-t2v-previw``) is refused with "did you mean ...?"
    :param prompt: text prompt. Longer than the model's limit (800 or 1,500 characters) is refused, because
        DashScope would silently cut it; so are control characters other than newline and tab
    :param negative_prompt: what the video should not show, at most 500 characters
    :param duration: video length in seconds (allowed values depend on the model; default: the model's default)
    :param prompt_extend: let DashScope rewrite the prompt with an LLM (DashScope's default: true)
    :param watermark: add the "AI Generated" watermark (DashScope's default: false)
    :param seed: random seed in [0, 2147483647]
    :param audio: wan2.5/wan2.6 only: add generated audio (DashScope's default: true on those models)
    :param audio_url: wan2.5-wan2.7 only: a wav/mp3 file (3-30 s, <= 15 MB) to synchronise with: an http(s) URL,
        a local path or a ``gs://`` object (uploaded to DashScope's temporary storage first)
    :param shot_type: wan2.6 only: ``single`` or ``multi`` (multi-shot needs ``prompt_extend=True``)
    :param parameters: any other field of the request schema by its DashScope name (``ratio``, ``resolution``,
        ``audio_setting``, ``mask_type``, ...; see :doc:`/request-schema`), placed in ``input`` or ``parameters``
        by the schema and validated like the operator's own arguments
    :param input_extra: extra ``input`` fields the catalogue does not model yet, sent as given (JSON values)
    :param parameters_extra: extra ``parameters`` fields the catalogue does not model yet, sent as given (JSON values)
    :param wan_conn_id: the ``wan`` connection (default ``wan_default``)
    :param wait_for_completion: wait for the video (default True); False returns once the task is created
    :param poll_interval: seconds between status reads while waiting (default 15, DashScope's suggestion; above 0, so
        the wait never reads in a tight loop, and at most 30 days)
    :param timeout: seconds to wait for the video before failing with a retryable error (default 3600; above 0, at
        most 30 days). A task still RUNNING is left alone and a retry re-attaches to it; with ``deferrable=True`` a
        task still PENDING at the deadline is canceled first (nothing was paid for it), and the retry submits afresh
    :param max_cost_usd: refuse to submit when the estimated price in USD of the final request (``*_extra``
        included) is higher, or unknown (default: no limit)
    :param take: which take of this request to generate (default 1). Retries and re-runs of the same request
        re-attach to the task already made for it; raise ``take`` to pay for a new video of the very same request
        (same prompt, seed, size...). Templated
    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``)
    :param cancel_on_kill: cancel the DashScope task (if still PENDING) when the Airflow task is killed (default True)
    """

    #: the model families this operator takes (empty: any video model, known or not)
    families: ClassVar[tuple[Family, ...]] = ()
    template_fields: Sequence[str] = (
        "model",
        "prompt",
        "negative_prompt",
        "duration",
        "seed",
        "audio_url",
        "parameters",
        "input_extra",
        "parameters_extra",
        "wan_conn_id",
        "take",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "parameters": "json",
        "input_extra": "json",
        "parameters_extra": "json",
    }
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        model: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        duration: int | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        seed: int | None = None,
        audio: bool | None = None,
        audio_url: str | None = None,
        shot_type: str | None = None,
        parameters: dict[str, Any] | None = None,
        input_extra: dict[str, Any] | None = None,
        parameters_extra: dict[str, Any] | None = None,
        wan_conn_id: str = WanHook.default_conn_name,
        wait_for_completion: bool = True,
        poll_interval: float = 15.0,
        timeout: float = 3600.0,
        max_cost_usd: float | None = None,
        take: int = 1,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.duration = duration
        self.prompt_extend = prompt_extend
        self.watermark = watermark
        self.seed = seed
        self.audio = audio
        self.audio_url = audio_url
        self.shot_type = shot_type
        self.parameters = parameters or {}
        self.input_extra = input_extra or {}
        self.parameters_extra = parameters_extra or {}
        self.wan_conn_id = wan_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.max_cost_usd = max_cost_usd
        self.take = take
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self._wan_task_id: str | None = None
        self.lineage_record: LineageRecord | None = None
        self._last_task: WanTask | None = None
        #: the retry-safety record of the task this operator waits for (what its create knew)
        self._record: CreateRecord | None = None
        #: the store refused that record's task id (:meth:`_store`)
        self._unstored = False
        self._local_media: list[LocalMedia] = []

    @cached_property
    def hook(self) -> WanHook:
        return WanHook(wan_conn_id=self.wan_conn_id)

    # -- the request ------------------------------------------------------------------------------------------------
    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        """The operator's own request fields, by their schema names (None: not set). ``model`` may be unknown."""
        return {}

    def request_fields(self, model: WanModel | None) -> dict[str, Any]:
        """Every request field this operator sets, by schema name, before the ``parameters`` dict is merged."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "duration": parse_int(self.duration),
            "prompt_extend": self.prompt_extend,
            "watermark": self.watermark,
            "seed": parse_int(self.seed),
            "audio": self.audio,
            "audio_url": self.audio_url,
            "shot_type": self.shot_type,
            **self.family_fields(model),
        }

    def _model(self) -> WanModel | None:
        model = get_model(self.model) if isinstance(self.model, str) else None
        if model is None and isinstance(self.model, str) and (slip := model_name_problem(self.model)) is not None:
            raise WanInvalidInputError(f"model: {slip}")
        if model is not None and self.families and model.family not in self.families:
            names = [name for family in self.families for name in models_of(family)]
            raise WanInvalidInputError(
                f"model: {self.model} is a {model.family.label} model; {type(self).__name__} takes "
                f"{' or '.join(f.label for f in self.families)} models: {', '.join(names)}"
            )
        return model

    def _fields(self, model: WanModel | None) -> dict[str, Any]:
        fields = self.request_fields(model)
        if not isinstance(self.parameters, dict):
            raise WanInvalidInputError(
                f"parameters: must be a dict of request fields, got {type(self.parameters).__name__}"
            )
        for name, value in self.parameters.items():
            row = field_named(name)
            if row is None:
                raise WanInvalidInputError(
                    f"parameters: {name!r} is not a field of the provider's request schema (model {self.model}); "
                    "send it with input_extra or parameters_extra"
                )
            if fields.get(name) is not None and value is not None:
                raise WanInvalidInputError(f"parameters: {name} is already set through the operator's own argument")
            # a templated number arrives as text ("5"), as the operator's own duration and seed do
            fields[name] = parse_value(row, value)
        return fields

    def build_request(self) -> tuple[str, dict[str, Any]]:
        """
        Validate everything and build the create request, without any HTTP.

        Local files and ``gs://`` objects are checked here (size, format, sides) but uploaded only when the task is
        created (in :meth:`execute`), so their places in the body still hold the paths. Built from the fields as
        rendered, signed links whole (the operator's attributes keep them without their query: :mod:`.masking`).

        :return: the create endpoint (path below the base URL) and the JSON body
        :raises WanInvalidInputError: naming each bad parameter, the model and what is allowed
        """
        rendered = self.with_signed_links()
        request = rendered._build_request()
        self._local_media = rendered._local_media
        return request

    def _build_request(self) -> tuple[str, dict[str, Any]]:
        families = self.families or tuple(Family)
        if not isinstance(self.model, str) or not self.model:
            example = next(iter(name for f in families for name in models_of(f)))
            raise WanInvalidInputError(f"model: a Wan model name is required, e.g. {example}")
        model = self._model()
        input_, parameters = place(self._fields(model))
        for name, extra, documented in (
            ("input_extra", self.input_extra, input_),
            ("parameters_extra", self.parameters_extra, parameters),
        ):
            if not isinstance(extra, dict):
                raise WanInvalidInputError(f"{name}: must be a dict of extra fields, got {type(extra).__name__}")
            clash = sorted(set(extra) & set(documented))
            if clash:
                raise WanInvalidInputError(
                    f"{name}: {', '.join(clash)} already set through the operator's own parameters; set it once"
                )
            for key, value in extra.items():
                # sent as given, so as JSON: NaN, infinity, a set, a datetime (a native template's) cannot be
                try:
                    json.dumps(value, allow_nan=False)
                except (TypeError, ValueError, RecursionError):
                    raise WanInvalidInputError(
                        f"{name}: {key} must be a JSON value, as it is sent as given (a string, a finite number, "
                        "true or false, null, or lists and objects of them)"
                    ) from None
            documented.update(extra)
        if model is None:
            self.log.warning(
                "Model %r is not in the provider's catalogue: sending it without model-specific checks", self.model
            )
            problems = validate_unknown_model_request(self.model, input_, parameters)
        else:
            problems = validate_request(model, input_, parameters, local_ok=True) + validate_texts(model.name, input_)
        problems += validate_references(self.model, input_)
        if problems:
            raise WanInvalidInputError(f"Invalid input for {self.model}: " + "; ".join(str(p) for p in problems))
        # local and gs:// files: checked now (free), uploaded at submission
        self._local_media = check_local_media(input_, self.model)
        return self.endpoint_for(model), {"model": self.model, "input": input_, "parameters": parameters}

    def endpoint_for(self, model: WanModel | None) -> str:
        """The create path: the catalogue's for a known model, else the operator's family's."""
        if model is not None:
            return model.endpoint
        return self.families[0].endpoint if self.families else VIDEO_GENERATION_ENDPOINT

    def estimated_cost_usd(self, body: dict[str, Any] | None = None) -> float | None:
        """
        List price in USD of the request: the final ``body`` when given, else the operator's fields (extras
        included); None for a model or tier without a catalogue price.
        """
        model = get_model(self.model) if isinstance(self.model, str) else None
        if model is None:
            return None
        if body is None:
            try:
                input_, parameters = place(self._fields(model))
            except WanInvalidInputError:
                return None
            input_ = {**input_, **(self.input_extra if isinstance(self.input_extra, dict) else {})}
            parameters = {**parameters, **(self.parameters_extra if isinstance(self.parameters_extra, dict) else {})}
        else:
            input_, parameters = body["input"], body["parameters"]
        return request_cost_usd(model, input_, parameters, prices=self.hook.price_overrides().get(model.name))

    # -- execution --------------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        endpoint, body = self.build_request()
        # credentials are resolved before anything is sent: no key or an unknown region fails here, for free
        credentials = self.hook.credentials
        self._check_run_settings()
        take = parse_int(self.take)
        if not (isinstance(take, int) and not isinstance(take, bool) and take >= 1):
            raise WanInvalidInputError(f"take: must be a whole number >= 1 (ASCII digits), got {self.take!r}")
        self.log.info("DashScope endpoint: %s", credentials.describe())
        records = record_store(context)
        fingerprint = request_fingerprint(self.model, endpoint, self._fingerprinted(body), take)
        record = self._reattach(records, fingerprint)
        if record is None:
            # priced (and held to the budget) only when a task is about to be paid for: re-attaching pays nothing,
            # and reports the estimate recorded when its task was created
            cost = self._checked_cost(body)
            region, namespace = credentials.location()
            record = CreateRecord(
                fingerprint, self.model, time.time(), estimated_cost_usd=cost, region=region, namespace=namespace
            )
            record = self._create(records, record, endpoint, body)
        self._record = record
        task_id = record.task_id or ""
        try:
            # XCom only once the record holds the id: a failing push now costs a retry, not a second video
            self._wan_task_id = task_id
            context["ti"].xcom_push(key=XCOM_TASK_ID_KEY, value=task_id)
            return self._wait(task_id)
        finally:
            # the store refused the id when the create answered: asked again as the try ends or defers
            if self._unstored:
                self._store(records, record)

    def _checked_cost(self, body: dict[str, Any]) -> float | None:
        """The estimate of the request about to be created, logged and held to ``max_cost_usd`` (raises above it)."""
        cost = self.estimated_cost_usd(body)
        if cost is None:
            self.log.info("Estimated cost: unknown (no catalogue price for model %s)", self.model)
        else:
            self.log.info("Estimated cost: $%.4f (%s, list price per generated second x duration)", cost, self.model)
        if self.max_cost_usd is not None and (cost is None or cost > self.max_cost_usd):
            raise WanInvalidInputError(
                f"max_cost_usd: the estimate for {self.model} is "
                f"{'unknown' if cost is None else f'${cost:.4f}'}, above the budget of ${self.max_cost_usd:.4f}; "
                "nothing was submitted"
            )
        return cost

    def _check_run_settings(self) -> None:
        """
        The numbers that govern the run, checked before anything is paid for. NaN compares false to everything: a
        NaN budget let any estimate through, a NaN or infinite ``timeout`` broke the deferral (or the wait) only
        after the task was created and billed, as did a ``timeout`` of 0 or less (a wait that can only time out) and
        one of centuries (Airflow's deferral deadline, now + timeout, overflowed the database's dates: every retry
        re-attached and failed again, and the paid video was never handed on). A ``poll_interval`` of 0 read the paid
        task in a tight loop. The rule is :func:`~airflow_provider_wan.hooks.schedule.check_wait_seconds`.
        """
        budget: Any = self.max_cost_usd
        if budget is not None and not _is_amount(budget):
            raise WanInvalidInputError(
                f"max_cost_usd: must be a number of US dollars (None: no limit), got {budget!r}; nothing was "
                f"submitted for {self.model}"
            )
        for name, value in (("timeout", self.timeout), ("poll_interval", self.poll_interval)):
            check_wait_seconds(name, value, f"nothing was submitted for {self.model}")

    def _fingerprinted(self, body: dict[str, Any]) -> dict[str, Any]:
        """
        The body as the fingerprint sees it: local and gs:// files by their content's sha256, not their path; a
        signed link (a URL with a query, fragment or password) without them, in a media field or anywhere else
        (``input_extra``, ``parameters_extra``, a media item of a type the catalogue does not know). A presigned link
        gets a fresh expiry and signature each time its template is rendered, so each try renders another one of the
        same image: counting them made every retry a new request, and a second paid video. They are secrets
        (:mod:`airflow_provider_wan.masking`), not what the link points to.
        """
        digests = {media.ref.parameter: media.digest for media in self._local_media}
        copied = copy.deepcopy(body)
        for ref in media_references(copied["input"]):
            if ref.parameter in digests:
                ref.replace(f"sha256:{digests[ref.parameter]}")
            elif is_signed_link(ref.value):
                ref.replace(unsigned_link(ref.value))
        # elsewhere a link is a whole string: a prompt that starts with one is text
        return unsigned_links(copied)

    def _reattach(self, records: RecordStore, fingerprint: str) -> CreateRecord | None:
        """The record of the task an earlier try made for this very request, if it can still give its video."""
        previous = records.get()
        if previous is None:
            return None
        if previous.fingerprint != fingerprint:
            self.log.info(
                "The request differs from the one an earlier try sent (DashScope task %s, fingerprint %s...): the "
                "prompt, a parameter, a file or the take changed, so a new task is created (fingerprint %s...)",
                previous.task_id or "unknown",
                previous.fingerprint[:12],
                fingerprint[:12],
            )
            return None
        if previous.in_flight:
            raise outcome_unknown_error(previous, store=records.description)
        task = self.hook.get_task(previous.task_id or "")
        if task.status is TaskStatus.UNKNOWN and not previous.forgotten(time.time()):
            # not expired, so alive somewhere: only a task that ended without a video, or is gone, is made again
            raise unknown_task_error(previous, asked=self.hook.credentials.describe(), now=time.time())
        if task.status is TaskStatus.SUCCEEDED or not task.status.is_terminal():
            self.log.info(
                "Re-attaching to DashScope task %s (%s), made by an earlier try for this same request "
                "(fingerprint %s...); nothing new is created",
                task.task_id,
                task.status.value,
                fingerprint[:12],
            )
            self._last_task = task
            return previous
        self.log.warning(
            "DashScope task %s, made by an earlier try for this same request, ended %s: creating a new task",
            task.task_id,
            task.status.value,
        )
        return None

    def _create(self, records: RecordStore, record: CreateRecord, endpoint: str, body: dict[str, Any]) -> CreateRecord:
        if self._local_media:
            # uploaded only now, when a task is really created: a try that re-attaches uploads nothing
            body = copy.deepcopy(body)
            upload_all(self.hook, self.model, check_local_media(body["input"], self.model), self.log)
        previous = records.get()
        # the in-flight mark goes in before the POST: if this try dies before the answer is stored, the next one
        # knows a task may exist. Stamped now, after the uploads (minutes for big files): the window an outcome-unknown
        # error tells the user to search, and when DashScope forgets the task, count from when the create left
        record = dataclasses.replace(record, sent_at=time.time())
        records.put(record)
        try:
            task = self.hook.create_task(endpoint, body)
        except WanCreateOutcomeUnknownError:
            raise
        except WanError:
            # DashScope refused the create (a classified answer): no task exists, so the mark comes off again
            if previous is None:
                records.delete()
            else:
                records.put(previous)
            raise
        # logged first: whatever happens next, the id of the task paid for is in the log
        self.log.info("Created DashScope task %s (%s, request_id=%s)", task.task_id, self.model, task.request_id)
        record = record.with_task(task.task_id)
        self._store(records, record)
        return record

    def _store(self, records: RecordStore, record: CreateRecord) -> None:
        """
        Store the record of a task that exists and is paid for. A store that refuses it (the metadata database
        locked or unreachable) does not fail the try: its video is waited for all the same, and the write is tried
        again as the try ends, defers or resumes. Failing here would lose the video: the next try would find the
        "in flight" mark without the id, and could only stop as outcome unknown.
        """
        try:
            records.put(record)
        except Exception as exc:  # the store's own text (SQL, a server's answer) is not ours to repeat
            self._unstored = True
            self.log.error(
                "Could not store DashScope task %s in %s (%s); waiting for it all the same. Until it is stored, a "
                "later try of this task cannot re-attach to it and stops as outcome unknown: then wait for it with "
                "WanTaskSensor(wan_task_id=%r)",
                record.task_id,
                records.description,
                type(exc).__name__,
                record.task_id,
            )
        else:
            self._unstored = False

    def _wait(self, task_id: str) -> WanResult:
        """Wait for the task (in the worker or the triggerer) and return its result; the same on every path."""
        known = self._last_task if self._last_task is not None and self._last_task.task_id == task_id else None
        if not self.wait_for_completion:
            return self.result(known or WanTask(task_id=task_id, status=TaskStatus.PENDING))
        if known is not None and known.status.is_terminal():
            return self.result(known)
        if self.deferrable:
            # a task already finished (or failed) never reaches the triggerer
            read_at = time.time()
            task = known or self.hook.get_task(task_id)
            if task.status.is_terminal():
                task.raise_for_status()
                self._last_task = task
                return self.result(task)
            self._defer(task, read_at)
        started = time.monotonic()

        def on_status(task: WanTask, elapsed: float) -> None:
            self.log.info("DashScope task %s is %s after %.0f s", task.task_id, task.status.value, elapsed)

        task = self.hook.wait_for_task(
            task_id, poll_interval=self.poll_interval, timeout=self.timeout, on_status=on_status, kind=self.task_kind
        )
        self._last_task = task
        self.log.info("DashScope task %s SUCCEEDED in %.0f s", task_id, time.monotonic() - started)
        return self.result(task)

    def _defer(self, task: WanTask, read_at: float) -> None:
        from airflow_provider_wan.triggers.wan import WanTaskTrigger

        self.defer(
            trigger=WanTaskTrigger(
                task_id=task.task_id,
                wan_conn_id=self.wan_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout,
                # the status was read just now: the trigger's first read waits one interval
                first_poll_at=time.time() + self.poll_interval,
                # a deferred task has no worker process for on_kill(): the trigger's on_kill cancels instead
                cancel_on_kill=self.cancel_on_kill,
                kind=self.task_kind,
                # the read just made: the triggerer plans the first read from it (what it learned of the kind)
                checked=WanTaskTrigger.checked_read(task, read_at),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFER_TIMEOUT_MARGIN,
        )

    @property
    def task_kind(self) -> str:
        """What reads are planned by: tasks of one model, resolution and duration take about as long as each other."""
        resolution = getattr(self, "resolution", None) or getattr(self, "size", None)
        return task_kind(self.model, resolution, self.duration)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> WanResult:
        """Resume after the trigger: validate the event, fail exactly as the sync path would, or return the result."""
        from airflow_provider_wan.triggers.wan import task_from_event

        task = task_from_event(event)
        self._wan_task_id = task.task_id
        self.log.info("DashScope task %s %s", task.task_id, task.status.value)
        self._record = self._stored_record(context, task.task_id)
        return self.result(task)

    def _stored_record(self, context: Context, task_id: str) -> CreateRecord | None:
        """The retry-safety record of ``task_id`` (after a deferral: it holds what the create knew); None, logged."""
        try:
            records = record_store(context)
            record = records.get()
        except Exception as exc:  # the video is ready: a store that cannot be read now costs its facts, not the task
            self.log.warning(
                "Could not read the retry-safety record of DashScope task %s (%s)", task_id, type(exc).__name__
            )
            return None
        if record is not None and record.in_flight:
            # still "in flight": the store refused the id when this task was created (the task deferred for is the
            # create that followed that mark); stored now, so a clear re-attaches
            record = record.with_task(task_id)
            self._store(records, record)
        return record if record is not None and record.task_id == task_id else None

    def result(self, task: WanTask) -> WanResult:
        """
        The value returned to XCom (:class:`~airflow_provider_wan.results.WanResult`): the task's result plus model,
        region and the cost estimate, as the create recorded them. Nothing is priced or looked up again: the video is
        paid for, and a price table or connection edited during the wait must neither change nor fail its result.
        """
        record = self._record if self._record is not None and self._record.task_id == task.task_id else None
        if record is None:
            self.log.warning(
                "No retry-safety record of DashScope task %s was found: its result has no cost estimate", task.task_id
            )
        cost = record.estimated_cost_usd if record is not None else None
        if record is not None and record.region and record.namespace:
            region, namespace = record.region, record.namespace
        else:
            region, namespace = self.hook.reported_endpoint()
        # for OpenLineage, recorded now: the listener may run in a forked process, after the task
        self.lineage_record = LineageRecord(
            namespace=namespace,
            wan_task_id=task.task_id,
            model=self.model,
            usage=dict(task.usage),
            estimated_cost_usd=cost,
        )
        return {**task.to_result(), "model": self.model, "region": region, "estimated_cost_usd": cost}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        OpenLineage (with apache-airflow-providers-openlineage): the DashScope model as output and the ``wan`` run
        facet (task id, model, usage, cost). See :doc:`/lineage`.
        """
        from airflow_provider_wan._openlineage import operator_lineage

        return operator_lineage(self.lineage_record, model_is_input=False)

    def on_kill(self) -> None:
        task_id = self._wan_task_id
        if not (self.cancel_on_kill and task_id):
            return
        # the read and the cancel each get the grace a trigger's kill gets: a kill ends soon, whatever the server does
        # (the hook's own limits let a server trickling its answer hold it for minutes)
        grace = min(self.poll_interval, LAST_READ_GRACE_SECONDS)
        try:
            task = self.hook.get_task(task_id, timeout=grace)
            if task.status is TaskStatus.PENDING:
                self.hook.cancel_task(task_id, timeout=grace)
                self.log.info("Canceled DashScope task %s (it was still PENDING)", task_id)
            else:
                self.log.info("DashScope task %s is %s; only PENDING tasks can be canceled", task_id, task.status.value)
        except WanError as error:
            self.log.warning("Could not cancel DashScope task %s: %s", task_id, error)
        except Exception as exc:  # our words only: a library's exception text may hold a key or a signed URL
            self.log.warning("Could not cancel DashScope task %s (%s)", task_id, type(exc).__name__)


class WanTextToVideoOperator(WanBaseVideoOperator):
    """
    Generate a video from a text prompt (``wan2.7-t2v``, ``wan2.6-t2v``, ``wan2.5-t2v-preview``, ...).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanTextToVideoOperator`

    :param size: ``width*height``, e.g. ``1280*720`` (wan2.6 and earlier; allowed values depend on the model)
    :param resolution: ``720P`` or ``1080P`` (wan2.7, which takes resolution + ratio instead of size)
    :param ratio: ``16:9``, ``9:16``, ``1:1``, ``4:3`` or ``3:4`` (wan2.7)

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    families = (Family.TEXT_TO_VIDEO,)
    template_fields: Sequence[str] = (*WanBaseVideoOperator.template_fields, "size", "resolution", "ratio")

    def __init__(
        self, *, size: str | None = None, resolution: str | None = None, ratio: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.resolution = resolution
        self.ratio = ratio

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        return {"size": self.size, "resolution": self.resolution, "ratio": self.ratio}


class WanImageToVideoOperator(WanBaseVideoOperator):
    """
    Animate an image used as the first frame, optionally towards a last frame, or continue a video clip
    (``wan2.7-i2v``, ``wan2.6-i2v``, ``wan2.5-i2v-preview``, ``wan2.2-i2v-flash``, ...).

    On ``wan2.7-i2v`` the inputs travel as ``input.media`` items (``first_frame``, ``last_frame``,
    ``driving_audio``, ``first_clip``); on older models as ``img_url`` and ``audio_url``. Every image, audio or
    clip may be an http(s) URL, a local path or a ``gs://bucket/object`` (uploaded to DashScope's temporary
    storage first).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanImageToVideoOperator`

    :param img_url: the first frame (JPEG, PNG, BMP or WEBP; at most 10 MB before wan2.7, 20 MB on wan2.7)
    :param last_frame_url: wan2.7 only: the last frame
    :param first_clip_url: wan2.7 only: a 2-10 s clip (mp4/mov) to continue; the video starts with it. Not with
        ``img_url`` or ``audio_url``
    :param resolution: ``480P``, ``720P`` or ``1080P`` (allowed values depend on the model)
    :param template: video-effect template name (wan2.1 models)

    ``audio_url`` (:class:`WanBaseVideoOperator`) is the driving audio on wan2.7. All other parameters:
    :class:`WanBaseVideoOperator`.
    """

    families = (Family.IMAGE_TO_VIDEO,)
    template_fields: Sequence[str] = (
        *WanBaseVideoOperator.template_fields,
        "img_url",
        "last_frame_url",
        "first_clip_url",
        "resolution",
        "template",
    )

    def __init__(
        self,
        *,
        img_url: str | None = None,
        last_frame_url: str | None = None,
        first_clip_url: str | None = None,
        resolution: str | None = None,
        template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.img_url = img_url
        self.last_frame_url = last_frame_url
        self.first_clip_url = first_clip_url
        self.resolution = resolution
        self.template = template

    def request_fields(self, model: WanModel | None) -> dict[str, Any]:
        fields = super().request_fields(model)
        if model is not None and model.uses_media:
            items = media_items(
                ("first_frame", self.img_url),
                ("last_frame", self.last_frame_url),
                ("driving_audio", fields.pop("audio_url")),
                ("first_clip", self.first_clip_url),
            )
            fields["media"] = items or None
        return fields

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        if model is not None and model.uses_media:
            return {"resolution": self.resolution, "template": self.template}
        for name, value in (("last_frame_url", self.last_frame_url), ("first_clip_url", self.first_clip_url)):
            if value is not None:
                takers = ", ".join(m for m in models_of(Family.IMAGE_TO_VIDEO) if _media(m))
                raise WanInvalidInputError(f"{name}: is supported only by {takers}, not by {self.model}")
        return {"img_url": self.img_url, "resolution": self.resolution, "template": self.template}


class WanKeyframeToVideoOperator(WanBaseVideoOperator):
    """
    Generate the motion between a first and a last frame (``wan2.2-kf2v-flash``, ``wan2.1-kf2v-plus``).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanKeyframeToVideoOperator`

    :param first_frame_url: the first frame (http(s) URL, ``gs://bucket/object``, local path or data URI)
    :param last_frame_url: the last frame; may be omitted only with a ``template``
    :param resolution: ``480P``, ``720P`` or ``1080P`` (allowed values depend on the model)
    :param template: video-effect template name (``wan2.1-kf2v-plus``); with it only the first frame is used

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    families = (Family.KEYFRAME_TO_VIDEO,)
    template_fields: Sequence[str] = (
        *WanBaseVideoOperator.template_fields,
        "first_frame_url",
        "last_frame_url",
        "resolution",
        "template",
    )

    def __init__(
        self,
        *,
        first_frame_url: str,
        last_frame_url: str | None = None,
        resolution: str | None = None,
        template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.first_frame_url = first_frame_url
        self.last_frame_url = last_frame_url
        self.resolution = resolution
        self.template = template

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        return {
            "first_frame_url": self.first_frame_url,
            "last_frame_url": self.last_frame_url,
            "template": self.template,
            "resolution": self.resolution,
        }


class WanReferenceToVideoOperator(WanBaseVideoOperator):
    """
    Generate a video starring the people, animals or objects of reference images and videos (``wan2.7-r2v``,
    ``wan2.6-r2v``, ``wan2.6-r2v-flash``).

    Refer to the references in the prompt in list order: "Image 1", "Video 1" on wan2.7, ``character1``,
    ``character2`` on wan2.6. Each reference is an http(s) URL, a local path or a ``gs://`` object.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanReferenceToVideoOperator`

    :param reference_images: reference images (wan2.7: up to 5 images and videos in all)
    :param reference_videos: reference videos, mp4/mov 1-30 s (wan2.7: 2-10 s output with a video)
    :param reference_urls: wan2.6: images and videos in one list, 1-5
    :param reference_voices: wan2.7: a voice (wav/mp3, 1-10 s) per reference, keyed by the reference as given
    :param first_frame_url: wan2.7: the first frame (the ratio then follows it)
    :param size: wan2.6: ``width*height``
    :param resolution: wan2.7: ``720P`` or ``1080P``
    :param ratio: wan2.7: ``16:9``, ``9:16``, ``1:1``, ``4:3`` or ``3:4``

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    families = (Family.REFERENCE_TO_VIDEO,)
    template_fields: Sequence[str] = (
        *WanBaseVideoOperator.template_fields,
        "reference_images",
        "reference_videos",
        "reference_urls",
        "reference_voices",
        "first_frame_url",
        "size",
        "resolution",
        "ratio",
    )

    def __init__(
        self,
        *,
        reference_images: list[str] | None = None,
        reference_videos: list[str] | None = None,
        reference_urls: list[str] | None = None,
        reference_voices: dict[str, str] | None = None,
        first_frame_url: str | None = None,
        size: str | None = None,
        resolution: str | None = None,
        ratio: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference_images = reference_images
        self.reference_videos = reference_videos
        self.reference_urls = reference_urls
        self.reference_voices = reference_voices
        self.first_frame_url = first_frame_url
        self.size = size
        self.resolution = resolution
        self.ratio = ratio

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"size": self.size, "resolution": self.resolution, "ratio": self.ratio}
        if model is not None and not model.uses_media:
            for name in ("reference_images", "reference_videos", "reference_voices", "first_frame_url"):
                if getattr(self, name):
                    raise WanInvalidInputError(
                        f"{name}: {self.model} takes its references as reference_urls (images and videos in one "
                        "list); reference_images, reference_videos, reference_voices and first_frame_url are for "
                        "wan2.7-r2v"
                    )
            fields["reference_urls"] = self.reference_urls
            return fields
        if self.reference_urls:
            raise WanInvalidInputError(
                f"reference_urls: {self.model} takes reference_images and reference_videos (reference_urls is for "
                "wan2.6-r2v)"
            )
        voices = self.reference_voices or {}
        if not isinstance(voices, dict):
            raise WanInvalidInputError(
                f"reference_voices: {self.model} takes a dict of reference (a reference_images or reference_videos "
                f"entry) -> voice (a wav/mp3 URL or path), got {type(voices).__name__}"
            )
        voices = dict(voices)
        items: list[dict[str, Any]] = []
        for kind, name in (("reference_image", "reference_images"), ("reference_video", "reference_videos")):
            for url in reference_list(name, getattr(self, name), self.model):
                item: dict[str, Any] = {"type": kind, "url": url}
                if url in voices:
                    item["reference_voice"] = voices.pop(url)
                items.append(item)
        if voices:
            raise WanInvalidInputError(
                f"reference_voices: {', '.join(map(str, voices))} is not one of the reference images or videos "
                f"given to {self.model}; key each voice by its reference_images or reference_videos entry"
            )
        items.extend(media_items(("first_frame", self.first_frame_url)))
        fields["media"] = items or None
        return fields


class WanVideoEditOperator(WanBaseVideoOperator):
    """
    Edit a video by instruction (``wan2.7-videoedit``): "make it night", "replace the car with the one in Image 1".

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanVideoEditOperator`

    :param video_url: the video to edit (mp4/mov, at most 100 MB): http(s) URL, local path or ``gs://`` object
    :param reference_images: up to 4 images the instruction may refer to ("Image 1", ...)
    :param audio_setting: ``auto`` (new audio where needed, the default) or ``origin`` (keep the source audio)
    :param resolution: ``720P`` or ``1080P``
    :param ratio: ``16:9``, ``9:16``, ``1:1``, ``4:3`` or ``3:4``

    ``duration`` 0 (the default) keeps the source's length; 2-10 cuts it. All other parameters:
    :class:`WanBaseVideoOperator`.
    """

    families = (Family.VIDEO_EDIT,)
    template_fields: Sequence[str] = (
        *WanBaseVideoOperator.template_fields,
        "video_url",
        "reference_images",
        "audio_setting",
        "resolution",
        "ratio",
    )

    def __init__(
        self,
        *,
        video_url: str,
        reference_images: list[str] | None = None,
        audio_setting: str | None = None,
        resolution: str | None = None,
        ratio: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_url = video_url
        self.reference_images = reference_images
        self.audio_setting = audio_setting
        self.resolution = resolution
        self.ratio = ratio

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        references = reference_list("reference_images", self.reference_images, self.model)
        items = media_items(("video", self.video_url), *(("reference_image", u) for u in references))
        return {
            "media": items or None,
            "audio_setting": self.audio_setting,
            "resolution": self.resolution,
            "ratio": self.ratio,
        }


class WanSpeechToVideoOperator(WanBaseVideoOperator):
    """
    Make a portrait speak or sing an audio track (``wan2.2-s2v``; Beijing region). The video lasts as long as the
    audio (under 20 s).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanSpeechToVideoOperator`

    :param image_url: the portrait: http(s) URL, local path or ``gs://`` object
    :param audio_url: the speech or song (wav/mp3)
    :param resolution: ``480P`` (default) or ``720P``

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    families = (Family.SPEECH_TO_VIDEO,)
    template_fields: Sequence[str] = (*WanBaseVideoOperator.template_fields, "image_url", "resolution")

    def __init__(self, *, image_url: str, resolution: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_url = image_url
        self.resolution = resolution

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        return {"image_url": self.image_url, "resolution": self.resolution}


class WanAnimateOperator(WanBaseVideoOperator):
    """
    Move a person's image like the person in a video (``wan2.2-animate-move``) or put them into the video in
    place of its person (``wan2.2-animate-mix``). No prompt.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanAnimateOperator`

    :param image_url: the person (JPEG/PNG/BMP/WEBP, 200-4096 px, at most 5 MB)
    :param video_url: the motion source (mp4/avi/mov, 2-30 s, at most 200 MB)
    :param mode: ``wan-std`` (standard) or ``wan-pro`` (better, pricier)

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    families = (Family.ANIMATE,)
    template_fields: Sequence[str] = (*WanBaseVideoOperator.template_fields, "image_url", "video_url", "mode")

    def __init__(self, *, image_url: str, video_url: str, mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_url = image_url
        self.video_url = video_url
        self.mode = mode

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        return {"image_url": self.image_url, "video_url": self.video_url, "mode": self.mode}


class WanVaceOperator(WanBaseVideoOperator):
    """
    General video editing with VACE (``wan2.1-vace-plus``): one of five functions.

    * ``image_reference``: a video from 1-3 reference images (``ref_images_url``; ``obj_or_bg`` in ``parameters``)
    * ``video_repainting``: restyle ``video_url`` keeping its ``control_condition`` (pose, depth, scribble)
    * ``video_edit``: change the area of ``video_url`` given by ``mask_image_url`` or ``mask_video_url``
    * ``video_extension``: continue from ``first_clip_url`` / ``first_frame_url`` (or lead into the last ones)
    * ``video_outpainting``: widen ``video_url`` (``top_scale`` ... ``right_scale`` in ``parameters``)

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanVaceOperator`

    :param function: one of the five above
    :param video_url: the source video
    :param ref_images_url: 1-3 reference images
    :param mask_image_url: image of the area to edit (``video_edit``)
    :param mask_video_url: video of the area to edit (``video_edit``)
    :param first_frame_url: ``video_extension``: the first frame
    :param last_frame_url: ``video_extension``: the last frame
    :param first_clip_url: ``video_extension``: the clip to continue
    :param last_clip_url: ``video_extension``: the clip to lead into
    :param control_condition: ``posebodyface``, ``posebody``, ``depth`` or ``scribble``
    :param size: ``width*height`` (720P sizes)

    Every media input may be an http(s) URL, a local path or a ``gs://`` object. Further fields (``strength``,
    ``mask_type``, ``expand_ratio``, ``obj_or_bg``, ...) go in ``parameters``. All other parameters:
    :class:`WanBaseVideoOperator`.
    """

    families = (Family.VACE,)
    _INPUTS = (
        "video_url",
        "ref_images_url",
        "mask_image_url",
        "mask_video_url",
        "first_frame_url",
        "last_frame_url",
        "first_clip_url",
        "last_clip_url",
    )
    template_fields: Sequence[str] = (
        *WanBaseVideoOperator.template_fields,
        "function",
        *_INPUTS,
        "control_condition",
        "size",
    )

    def __init__(
        self,
        *,
        function: str,
        video_url: str | None = None,
        ref_images_url: list[str] | None = None,
        mask_image_url: str | None = None,
        mask_video_url: str | None = None,
        first_frame_url: str | None = None,
        last_frame_url: str | None = None,
        first_clip_url: str | None = None,
        last_clip_url: str | None = None,
        control_condition: str | None = None,
        size: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.function = function
        self.video_url = video_url
        self.ref_images_url = ref_images_url
        self.mask_image_url = mask_image_url
        self.mask_video_url = mask_video_url
        self.first_frame_url = first_frame_url
        self.last_frame_url = last_frame_url
        self.first_clip_url = first_clip_url
        self.last_clip_url = last_clip_url
        self.control_condition = control_condition
        self.size = size

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self._INPUTS}
        fields.update(function=self.function, control_condition=self.control_condition, size=self.size)
        return fields


class WanVideoOperator(WanBaseVideoOperator):
    """
    Any Wan video model, including ones the provider's catalogue does not know yet: ``model``, ``prompt``,
    ``media`` and ``parameters`` as DashScope names them. Wan 3.0 (``wan3.0-video``, ``wan3.0-video-prime``) is
    used through this operator.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanVideoOperator`

    :param media: ``input.media`` items, ``{"type": "first_frame", "url": ...}``: types ``first_frame``,
        ``last_frame``, ``reference_image``, ``reference_video``, ``reference_audio``, ``driving_audio``,
        ``first_clip``, ``video``, ``file``, ``link`` (which ones depend on the model); ``url`` (and
        ``reference_voice``) may be an http(s) URL, a local path or a ``gs://`` object
    :param parameters: every other field by its DashScope name, e.g. ``{"resolution": "720P", "ratio": "16:9",
        "duration": 10}``; the request schema puts each in ``input`` or ``parameters``
    :param endpoint: create path for a model the catalogue does not know (default: the video-generation
        endpoint; ``services/aigc/image2video/video-synthesis`` for kf2v, s2v and animate models)

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    template_fields: Sequence[str] = (*WanBaseVideoOperator.template_fields, "media")
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **WanBaseVideoOperator.template_fields_renderers,
        "media": "json",
    }

    def __init__(
        self, *, media: list[dict[str, Any]] | None = None, endpoint: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.media = media
        self.endpoint = endpoint

    def family_fields(self, model: WanModel | None) -> dict[str, Any]:
        if self.media is None:
            return {}
        if not isinstance(self.media, list):
            raise WanInvalidInputError(f"media: must be a list of {{type, url}} items, got {type(self.media).__name__}")
        # a copy: uploads write oss:// URLs into the body, never into the operator's argument
        return {"media": copy.deepcopy(self.media)}

    def endpoint_for(self, model: WanModel | None) -> str:
        if model is not None:
            return super().endpoint_for(model)
        if self.endpoint is not None:
            return self.endpoint.strip("/")
        # as the SDK routes them: first-and-last-frame, speech and animate models answer on image2video
        if any(mark in self.model for mark in ("kf2v", "s2v", "animate")):
            return IMAGE2VIDEO_ENDPOINT
        return VIDEO_GENERATION_ENDPOINT


def _is_amount(value: Any) -> bool:
    """A real number: an int or float, not a bool, not NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _media(name: str) -> bool:
    model = get_model(name)
    return model is not None and model.uses_media


def reference_list(name: str, value: Any, model: str) -> list[str]:
    """
    A list argument of references (None: none). A string is refused by name, not read character by character: one
    URL where a list belongs, or a list Jinja rendered as text (``"['a.png']"``).
    """
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        got = type(value).__name__ if not isinstance(value, list) else "a list holding something other than strings"
        raise WanInvalidInputError(
            f"{name}: {model} takes a list of references (http(s) URLs, local paths or gs:// URIs), got {got}"
        )
    return value


def media_items(*pairs: tuple[str, str | None]) -> list[dict[str, Any]]:
    """``input.media`` items from (type, url) pairs, skipping unset urls."""
    return [{"type": kind, "url": url} for kind, url in pairs if url is not None]
