"""
Submit operators for Wan video generation: text-to-video, image-to-video and first-and-last-frame (keyframe).

Each operator checks its input against the model catalogue before any request (bad input costs nothing and fails
at once), logs and returns the cost estimate, creates one DashScope task, pushes its id to XCom straight away, and
then waits for it in the worker or, with ``deferrable=True``, in the triggerer.

Retries never pay twice: the task id is persisted in Airflow's task state store (``ResumableJobMixin``) before the
wait starts, so a retry after a worker crash or a timeout re-attaches to the existing DashScope task instead of
creating (and paying for) another one. Only a task that ended FAILED, CANCELED or expired is submitted again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, ResumableJobMixin, conf

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.hooks.schedule import task_kind
from airflow_provider_wan.hooks.wan import TaskStatus, WanHook, WanTask
from airflow_provider_wan.images import IMAGE_FIELDS, is_remote_image, resolve_image
from airflow_provider_wan.models import Family, WanModel, estimate_cost_usd, get_model, models_of, validate_request

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom key (and task-state key) holding the DashScope task id
XCOM_TASK_ID_KEY = "wan_task_id"
#: the trigger gets this much longer than the operator's own timeout, so its timeout event arrives first
DEFER_TIMEOUT_MARGIN = timedelta(minutes=5)


def _as_int(value: Any) -> Any:
    """Templated numbers arrive as strings ("42"); the API wants integers."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


class WanBaseVideoOperator(ResumableJobMixin, BaseOperator):
    """
    Shared base of the Wan submit operators. Parameters keep DashScope's names.

    :param model: Wan model name, e.g. ``wan2.5-t2v-preview``. A model the catalogue does not know is sent with a
        warning and without model-specific checks (new models appear often).
    :param prompt: text prompt. Longer than the model's limit (800 or 1,500 characters) is refused, because
        DashScope would silently cut it.
    :param negative_prompt: what the video should not show, at most 500 characters
    :param duration: video length in seconds (allowed values depend on the model; default: the model's default)
    :param prompt_extend: let DashScope rewrite the prompt with an LLM (DashScope's default: true)
    :param watermark: add the "AI Generated" watermark (DashScope's default: false)
    :param seed: random seed in [0, 2147483647]
    :param audio: wan2.5/wan2.6 only: add generated audio (DashScope's default: true on those models)
    :param audio_url: wan2.5/wan2.6 only: http(s) URL of a wav/mp3 file (3-30 s, <= 15 MB) to synchronise with
    :param shot_type: wan2.6 only: ``single`` or ``multi`` (multi-shot needs ``prompt_extend=True``)
    :param input_extra: extra ``input`` fields the catalogue does not model yet, sent as given
    :param parameters_extra: extra ``parameters`` fields the catalogue does not model yet, sent as given
    :param wan_conn_id: the ``wan`` connection (default ``wan_default``)
    :param wait_for_completion: wait for the video (default True); False returns once the task is created
    :param poll_interval: seconds between status reads while waiting (default 15, DashScope's suggestion)
    :param timeout: seconds to wait for the video before failing with a retryable error (default 3600). A task
        still RUNNING is left alone and a retry re-attaches to it; with ``deferrable=True`` a task still PENDING at
        the deadline is canceled first (nothing was paid for it), and the retry submits afresh
    :param max_cost_usd: refuse to submit when the estimated price in USD is higher (default: no limit)
    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``)
    :param cancel_on_kill: cancel the DashScope task (if still PENDING) when the Airflow task is killed (default True)
    """

    family: ClassVar[Family]
    external_id_key = XCOM_TASK_ID_KEY
    template_fields: Sequence[str] = (
        "model",
        "prompt",
        "negative_prompt",
        "duration",
        "seed",
        "audio_url",
        "input_extra",
        "parameters_extra",
        "wan_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"input_extra": "json", "parameters_extra": "json"}
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
        input_extra: dict[str, Any] | None = None,
        parameters_extra: dict[str, Any] | None = None,
        wan_conn_id: str = WanHook.default_conn_name,
        wait_for_completion: bool = True,
        poll_interval: float = 15.0,
        timeout: float = 3600.0,
        max_cost_usd: float | None = None,
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
        self.input_extra = input_extra or {}
        self.parameters_extra = parameters_extra or {}
        self.wan_conn_id = wan_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.max_cost_usd = max_cost_usd
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self._wan_task_id: str | None = None
        self._last_task: WanTask | None = None
        self._request: tuple[str, dict[str, Any]] = ("", {})

    @cached_property
    def hook(self) -> WanHook:
        return WanHook(wan_conn_id=self.wan_conn_id)

    # -- the request ------------------------------------------------------------------------------------------------
    def family_input(self) -> dict[str, Any]:
        """The family's own ``input`` fields (images), before local/GCS images are read."""
        return {}

    def family_parameters(self) -> dict[str, Any]:
        """The family's own ``parameters`` fields (size or resolution)."""
        return {}

    def _model(self) -> WanModel | None:
        model = get_model(self.model) if isinstance(self.model, str) else None
        if model is not None and model.family is not self.family:
            raise WanInvalidInputError(
                f"model: {self.model} is a {model.family.value} model; {type(self).__name__} takes "
                f"{self.family.value} models: {', '.join(models_of(self.family))}"
            )
        return model

    def build_request(self) -> tuple[str, dict[str, Any]]:
        """
        Validate everything and build the create request, without any HTTP.

        :return: the create endpoint (path below the base URL) and the JSON body
        :raises WanInvalidInputError: naming each bad parameter, the model and what is allowed
        """
        if not isinstance(self.model, str) or not self.model:
            raise WanInvalidInputError(f"model: a Wan model name is required, e.g. {models_of(self.family)[0]}")
        model = self._model()
        inputs = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "audio_url": self.audio_url,
            **self.family_input(),
        }
        params = {
            "duration": _as_int(self.duration),
            "prompt_extend": self.prompt_extend,
            "watermark": self.watermark,
            "seed": _as_int(self.seed),
            "audio": self.audio,
            "shot_type": self.shot_type,
            **self.family_parameters(),
        }
        input_ = {k: v for k, v in inputs.items() if v is not None}
        parameters = {k: v for k, v in params.items() if v is not None}
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
            documented.update(extra)
        if model is None:
            self.log.warning(
                "Model %r is not in the provider's catalogue: sending it without model-specific checks", self.model
            )
        else:
            # local and gs:// images are checked when read, below; here they stand in as inline images
            as_sent = {
                k: "data:image/png;base64," if k in IMAGE_FIELDS and v and not is_remote_image(v) else v
                for k, v in input_.items()
            }
            problems = validate_request(model, as_sent, parameters)
            if problems:
                raise WanInvalidInputError(f"Invalid input for {model.name}: " + "; ".join(str(p) for p in problems))
        # read local and gs:// images only once everything else is known to be fine
        for image_field in IMAGE_FIELDS:
            if image_field in input_:
                input_[image_field] = resolve_image(input_[image_field], image_field)
        endpoint = model.endpoint if model is not None else self.family.endpoint
        return endpoint, {"model": self.model, "input": input_, "parameters": parameters}

    def estimated_cost_usd(self) -> float | None:
        """List price of the requested video in USD (None for a model without a catalogue price)."""
        model = get_model(self.model) if isinstance(self.model, str) else None
        if model is None:
            return None
        parameters = self.family_parameters()
        try:
            return estimate_cost_usd(
                model,
                size=parameters.get("size"),
                resolution=parameters.get("resolution"),
                duration=_as_int(self.duration),
                audio=self.audio,
                audio_url=self.audio_url,
            )
        except (KeyError, ValueError):
            return None

    # -- execution --------------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        endpoint, body = self.build_request()
        # credentials are resolved before anything is sent: no key or an unknown region fails here, for free
        credentials = self.hook.credentials
        cost = self.estimated_cost_usd()
        self._request = (endpoint, body)
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
        self.log.info("DashScope endpoint: %s", credentials.describe())
        return self.execute_resumable(context)

    def submit_job(self, context: Context) -> str:
        endpoint, body = self._request
        task = self.hook.create_task(endpoint, body)
        self._wan_task_id = task.task_id
        # pushed at once: whatever happens next, the id of the task being paid for is visible downstream
        context["ti"].xcom_push(key=XCOM_TASK_ID_KEY, value=task.task_id)
        self.log.info("Created DashScope task %s (%s, request_id=%s)", task.task_id, self.model, task.request_id)
        return task.task_id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        task = self.hook.get_task(str(external_id))
        self._last_task = task
        return task.status.value

    def is_job_active(self, status: str) -> bool:
        return not TaskStatus(status).is_terminal()

    def is_job_succeeded(self, status: str) -> bool:
        return status == TaskStatus.SUCCEEDED.value

    # The mixin returns this method's value when it re-attaches to a running task, so it returns the result.
    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any]:  # type: ignore[override]
        task_id = str(external_id)
        if self._wan_task_id != task_id:
            # re-attaching after a retry: this try's XCom does not have the id yet (submit_job pushed it otherwise)
            self._wan_task_id = task_id
            context["ti"].xcom_push(key=XCOM_TASK_ID_KEY, value=task_id)
        if not self.wait_for_completion:
            return self.result(WanTask(task_id=task_id, status=TaskStatus.PENDING))
        if self.deferrable:
            # a task already finished (or failed) never reaches the triggerer
            task = self.hook.get_task(task_id)
            if task.status.is_terminal():
                task.raise_for_status()
                self._last_task = task
                return self.result(task)
            self._defer(task_id)
        started = time.monotonic()

        def on_status(task: WanTask, elapsed: float) -> None:
            self.log.info("DashScope task %s is %s after %.0f s", task.task_id, task.status.value, elapsed)

        task = self.hook.wait_for_task(
            task_id, poll_interval=self.poll_interval, timeout=self.timeout, on_status=on_status, kind=self.task_kind
        )
        self._last_task = task
        self.log.info("DashScope task %s SUCCEEDED in %.0f s", task_id, time.monotonic() - started)
        return self.result(task)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        task = self._last_task
        if task is None or task.task_id != str(external_id):
            task = self.hook.get_task(str(external_id))
        if task.status is not TaskStatus.SUCCEEDED and self.wait_for_completion:
            task.raise_for_status()
        return self.result(task)

    def _defer(self, task_id: str) -> None:
        from airflow_provider_wan.triggers.wan import WanTaskTrigger

        self.defer(
            trigger=WanTaskTrigger(
                task_id=task_id,
                wan_conn_id=self.wan_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout,
                # the status was read just now: the trigger's first read waits one interval
                first_poll_at=time.time() + self.poll_interval,
                # a deferred task has no worker process for on_kill(): the trigger's on_kill cancels instead
                cancel_on_kill=self.cancel_on_kill,
                kind=self.task_kind,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFER_TIMEOUT_MARGIN,
        )

    @property
    def task_kind(self) -> str:
        """What reads are planned by: tasks of one model, resolution and duration take about as long as each other."""
        resolution = getattr(self, "resolution", None) or getattr(self, "size", None)
        return task_kind(self.model, resolution, self.duration)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: validate the event, fail exactly as the sync path would, or return the result."""
        from airflow_provider_wan.triggers.wan import task_from_event

        task = task_from_event(event)
        self._wan_task_id = task.task_id
        self.log.info("DashScope task %s %s", task.task_id, task.status.value)
        return self.result(task)

    def result(self, task: WanTask) -> dict[str, Any]:
        """The dict returned to XCom: the task's result plus model, region and the cost estimate."""
        result = task.to_result()
        region = self.hook.credentials.region
        result.update(model=self.model, region=region or "custom", estimated_cost_usd=self.estimated_cost_usd())
        return result

    def on_kill(self) -> None:
        task_id = self._wan_task_id
        if not (self.cancel_on_kill and task_id):
            return
        try:
            task = self.hook.get_task(task_id)
            if task.status is TaskStatus.PENDING:
                self.hook.cancel_task(task_id)
                self.log.info("Canceled DashScope task %s (it was still PENDING)", task_id)
            else:
                self.log.info("DashScope task %s is %s; only PENDING tasks can be canceled", task_id, task.status.value)
        except Exception:
            self.log.exception("Could not cancel DashScope task %s", task_id)


class WanTextToVideoOperator(WanBaseVideoOperator):
    """
    Generate a video from a text prompt (``wan2.6-t2v``, ``wan2.5-t2v-preview``, ``wan2.2-t2v-plus``, ...).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanTextToVideoOperator`

    :param size: ``width*height``, e.g. ``1280*720`` (allowed values depend on the model; default: the model's)

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    family = Family.TEXT_TO_VIDEO
    template_fields: Sequence[str] = (*WanBaseVideoOperator.template_fields, "size")

    def __init__(self, *, size: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = size

    def family_parameters(self) -> dict[str, Any]:
        return {"size": self.size}


class WanImageToVideoOperator(WanBaseVideoOperator):
    """
    Animate an image, used as the first frame (``wan2.6-i2v``, ``wan2.5-i2v-preview``, ``wan2.2-i2v-flash``, ...).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanImageToVideoOperator`

    :param img_url: the first frame: an http(s) URL, a ``gs://bucket/object``, a local path or a data URI (JPEG,
        PNG, BMP or WEBP, at most 10 MB; local and GCS images are sent inline as base64)
    :param resolution: ``480P``, ``720P`` or ``1080P`` (allowed values depend on the model)
    :param template: video-effect template name (wan2.1 models)

    All other parameters: :class:`WanBaseVideoOperator`.
    """

    family = Family.IMAGE_TO_VIDEO
    template_fields: Sequence[str] = (*WanBaseVideoOperator.template_fields, "img_url", "resolution", "template")

    def __init__(
        self, *, img_url: str, resolution: str | None = None, template: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.img_url = img_url
        self.resolution = resolution
        self.template = template

    def family_input(self) -> dict[str, Any]:
        return {"img_url": self.img_url, "template": self.template}

    def family_parameters(self) -> dict[str, Any]:
        return {"resolution": self.resolution}


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

    family = Family.KEYFRAME_TO_VIDEO
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

    def family_input(self) -> dict[str, Any]:
        return {
            "first_frame_url": self.first_frame_url,
            "last_frame_url": self.last_frame_url,
            "template": self.template,
        }

    def family_parameters(self) -> dict[str, Any]:
        return {"resolution": self.resolution}
