"""
WanTaskSensor: waits for an existing DashScope task, e.g. one a submit operator created with
``wait_for_completion=False``, in poke, reschedule or deferrable mode.

The sensor only reads the task, so retrying it never creates (or pays for) a video.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_wan.exceptions import (
    WanError,
    WanTaskFailedError,
    WanTaskRetryableFailure,
    WanTimeoutError,
)
from airflow_provider_wan.hooks.schedule import check_wait_seconds
from airflow_provider_wan.hooks.wan import WanHook, WanTask
from airflow_provider_wan.results import WanResult, task_id_of

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Airflow's own deferral timeout is this much longer than the trigger's deadline, so the trigger's "timeout"
#: event (which says what became of the DashScope task) arrives first.
DEFER_TIMEOUT_MARGIN = timedelta(minutes=5)


class WanTaskSensor(BaseSensorOperator):
    """
    Wait for a DashScope task to end; return its result dict, or fail when it ended without a video.

    .. code-block:: python

        submit = WanTextToVideoOperator(task_id="submit", ..., wait_for_completion=False)
        wait = WanTaskSensor(
            task_id="wait",
            wan_task_id="{{ ti.xcom_pull(task_ids='submit', key='wan_task_id') }}",
            deferrable=True,
        )

    A task that ended FAILED, CANCELED or UNKNOWN (expired) fails the sensor with the provider's final error, even
    for ``InternalError*`` codes: the task stays failed however often the sensor is retried, so only a new
    submission can help. With ``soft_fail=True`` the sensor is skipped instead. Errors reading the task (after the
    hook's own bounded retries) are ordinary, retryable task failures.

    :param wan_task_id: the DashScope task id, or a submit operator's whole result (``submit.output``) (templated)
    :param wan_conn_id: the ``wan`` connection (default ``wan_default``, templated)
    :param poke_interval: seconds between two reads of the task (default 15, DashScope's suggestion; Airflow's
        sensor default of 60 s would add up to a minute to every video). In ``reschedule`` mode prefer 60 s or
        more, as Airflow advises: each poke is a new worker start, and a reschedule shorter than the executor's
        event latency can make the scheduler fail the sensor (apache/airflow#71172, open in 3.3). Above 0 (Airflow
        itself takes 0, a tight loop of reads) and at most 30 days, refused before the first read
    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``)
    :param timeout: seconds to wait before the sensor fails (or skips, with ``soft_fail``); Airflow's sensor default
        is ``[sensors] default_timeout`` (7 days). In poke mode a read under way is cut at the timeout too (a slow
        server cannot hold the sensor past it). A deferrable sensor takes at most 30 days (its deadline is stored in
        the database). The DashScope task is never canceled by this sensor.

    Other parameters (``mode``, ``soft_fail``, ``exponential_backoff``, ...): :class:`BaseSensorOperator`.
    """

    template_fields: Sequence[str] = ("wan_task_id", "wan_conn_id")
    ui_color = "#ffb37a"

    def __init__(
        self,
        *,
        wan_task_id: str,
        wan_conn_id: str = WanHook.default_conn_name,
        poke_interval: timedelta | float = 15.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.wan_task_id = wan_task_id
        self.wan_conn_id = wan_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> WanHook:
        return WanHook(wan_conn_id=self.wan_conn_id)

    def _checked_task_id(self) -> str:
        # a task id, or a whole result (``wan_task_id=submit.output``), as the transfers take it
        task_id = str(task_id_of(self.wan_task_id) or self.wan_task_id or "").strip()
        if not task_id or task_id == "None":
            # an xcom_pull that found nothing renders as "" or "None"
            raise WanTaskFailedError(
                f"wan_task_id: no DashScope task id (got {self.wan_task_id!r}); check the upstream task pushed one"
            )
        return task_id

    def poke(self, context: Context) -> bool | PokeReturnValue:
        # one read never outlasts the sensor's timeout: Airflow checks the timeout only between pokes, and a server
        # trickling its answer byte by byte would otherwise hold a poke (and the worker slot) for hours
        deadline = getattr(self, "_wait_deadline", None)
        left = float(self.timeout) if deadline is None else deadline - time.monotonic()
        try:
            task = self.hook.get_task(self._checked_task_id(), timeout=max(0.0, left))
        except WanTimeoutError as error:
            raise AirflowSensorTimeout(f"Sensor has timed out: {error.message}") from error
        if not task.status.is_terminal():
            self.log.info("DashScope task %s is %s", task.task_id, task.status.value)
            return False
        self._raise_if_not_succeeded(task)
        self.log.info("DashScope task %s SUCCEEDED", task.task_id)
        return PokeReturnValue(is_done=True, xcom_value=self.result(task))

    def execute(self, context: Context) -> Any:
        # Airflow takes a poke_interval of 0: every mode would then read the task in a tight loop
        check_wait_seconds("poke_interval", self.poke_interval, "the sensor read nothing")
        if not self.deferrable:
            if not self.reschedule:
                # poke mode: the whole wait ends at its timeout, the poke under way included
                self._wait_deadline = time.monotonic() + float(self.timeout)
            return super().execute(context)
        # a deferral's deadline (now + timeout) is stored in the database: an infinite or NaN timeout failed in
        # Python's words, one of centuries in the database's
        check_wait_seconds(
            "timeout",
            self.timeout,
            "a deferrable WanTaskSensor's deadline must fit the database; set a shorter timeout, or use mode='poke' "
            "or 'reschedule'",
        )
        # one read first: a task already finished never reaches the triggerer
        try:
            done = self.poke(context)
        except AirflowFailException as error:
            # BaseSensorOperator.execute applies soft_fail/never_fail to a poke's final error; this poke is ours
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping: {error} (soft_fail/never_fail is set)") from error
            raise
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        from airflow_provider_wan.triggers.wan import WanTaskTrigger

        self.defer(
            trigger=WanTaskTrigger(
                task_id=self._checked_task_id(),
                wan_conn_id=self.wan_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
                # the status was read just now: the trigger's first read waits one interval
                first_poll_at=time.time() + self.poke_interval,
                # not ours to stop: somebody else submitted the task and may still want it
                cancel_on_timeout=False,
                cancel_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFER_TIMEOUT_MARGIN,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> WanResult:
        """Resume after the trigger: the same outcome as a poke that saw the task end."""
        from airflow_provider_wan.triggers.wan import task_from_event

        try:
            task = task_from_event(event)
        except WanTimeoutError as error:
            # a sensor's timeout is Airflow's sensor timeout (no retries; soft_fail skips): in our words, not the
            # trigger's, which promise the re-attaching retry of a submit operator
            status = event.get("task_status") if isinstance(event, dict) else None
            seen = status if isinstance(status, str) and status.isalpha() else "not read in time"
            raise AirflowSensorTimeout(
                f"Sensor has timed out: DashScope task {error.task_id} did not end within the sensor's timeout of "
                f"{self.timeout:.0f} s (last seen: {seen}). The sensor does not cancel it, and a sensor timeout is "
                "not retried; rerun the sensor to wait again"
            ) from error
        except WanTaskRetryableFailure as error:
            # the task FAILED with an InternalError* code; any other retryable error (a garbled event, a read that
            # kept failing) says nothing about the task, and a retry of the sensor reads it again
            raise self._final(error) from error
        self.log.info("DashScope task %s SUCCEEDED", task.task_id)
        return self.result(task)

    def _raise_if_not_succeeded(self, task: WanTask) -> None:
        try:
            task.raise_for_status()
        except WanTaskRetryableFailure as error:
            raise self._final(error) from error

    @staticmethod
    def _final(error: WanError) -> WanTaskFailedError:
        # InternalError* is retryable for a submit operator (a new task may succeed), not for a sensor: the task it
        # watches stays FAILED. Final, so no pointless Airflow retries, and soft_fail applies in poke mode too.
        return WanTaskFailedError(
            f"{error.message}. The sensor cannot resubmit; rerun the task that created it",
            code=error.code,
            request_id=error.request_id,
            task_id=error.task_id,
        )

    def result(self, task: WanTask) -> WanResult:
        """
        The value returned to XCom (:class:`~airflow_provider_wan.results.WanResult`), the same as a submit
        operator's: the task's result (signed URL redacted) plus the region. The model is None (DashScope's task
        record does not name it), so there is no cost estimate either.
        """
        # the region as the connection says now, never an error: the task it watched has ended
        region, _ = self.hook.reported_endpoint()
        return {**task.to_result(), "model": None, "region": region, "estimated_cost_usd": None}
