"""
Errors of the Wan provider, and the one table that says which DashScope failures are worth retrying.

Two branches:

* :class:`WanFinalError` subclasses :class:`~airflow.sdk.exceptions.AirflowFailException`: Airflow fails the task
  at once, whatever ``retries`` says. Bad input, bad credentials, moderation, billing, expired results: a retry
  cannot fix any of them, and a task failed this way costs nothing.
* :class:`WanRetryableError` is a plain :class:`~airflow.sdk.exceptions.AirflowException`: Airflow's own retries
  apply. Throttling, 5xx and ``InternalError*`` task failures.

The hook retries transient HTTP errors itself (bounded) before any of these reach Airflow.
"""

from __future__ import annotations

import re
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_wan.redact import clean_text

__all__ = [
    "WanAuthError",
    "WanBillingError",
    "WanContentError",
    "WanCreateOutcomeUnknownError",
    "WanError",
    "WanFinalError",
    "WanInvalidInputError",
    "WanInvalidRequestError",
    "WanModelNotFoundError",
    "WanResultExpiredError",
    "WanRetryableError",
    "WanTaskCanceledError",
    "WanTaskFailedError",
    "WanTaskRetryableFailure",
    "WanTimeoutError",
    "WanTransferIntegrityError",
    "dashscope_code",
    "error_for_response",
    "error_for_task_failure",
]

_FREE_QUOTA_MESSAGE = "free allocated quota exceeded"


class WanError(AirflowException):
    """
    A failure talking to DashScope or of a DashScope task.

    :param message: what went wrong and what to do about it
    :param http_status: HTTP status of the response, None when no response arrived or for a task failure
    :param code: DashScope error code (``InvalidParameter``, ``DataInspectionFailed``, ...)
    :param request_id: DashScope request id, for support tickets
    :param task_id: DashScope task id, when one is known
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.task_id = task_id
        super().__init__(self._render())

    def _render(self) -> str:
        details = []
        if self.code:
            details.append(f"code={self.code}")
        if self.http_status is not None:
            details.append(f"http_status={self.http_status}")
        if self.task_id:
            details.append(f"task_id={self.task_id}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructor: keep the error picklable (Airflow ships exceptions across processes)
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description, for trigger events and logs."""
        return {
            "error_class": type(self).__name__,
            "message": self.message,
            "http_status": self.http_status,
            "code": self.code,
            "request_id": self.request_id,
            "task_id": self.task_id,
        }


def _rebuild(cls: type[WanError], message: str, state: dict[str, Any]) -> WanError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._render())
    return error


class WanRetryableError(WanError):
    """Transient: Airflow's retries may succeed (throttling, 5xx, ``InternalError*``, a wait that timed out)."""


class WanFinalError(WanError, AirflowFailException):
    """Permanent: the task fails at once, without Airflow retries."""


class WanInvalidInputError(WanFinalError, ValueError):
    """Input the provider refused before sending anything (no request was made, nothing was billed)."""


class WanInvalidRequestError(WanFinalError):
    """DashScope refused the request as malformed (400 ``InvalidParameter``, ``BadRequest.*``, ``InvalidURL*``...)."""


class WanAuthError(WanFinalError):
    """401/403: wrong key, key of another region, or no access to the model."""


class WanContentError(WanFinalError):
    """Moderation: ``DataInspectionFailed`` or ``IPInfringementSuspect``. Change the input; retrying will not help."""


class WanBillingError(WanFinalError):
    """``Arrearage``, free quota exhausted, unpurchased or overdue: a person must act on the account."""


class WanModelNotFoundError(WanFinalError):
    """404 ``ModelNotFound``: the model does not exist in this region."""


class WanTaskFailedError(WanFinalError):
    """The task ended FAILED with a code that a resubmission would not fix."""


class WanTaskRetryableFailure(WanRetryableError):
    """The task ended FAILED with an ``InternalError*``-like code: a new task may succeed."""


class WanTaskCanceledError(WanFinalError):
    """The task was canceled."""


class WanResultExpiredError(WanFinalError):
    """The task or its video is gone: DashScope keeps results for 24 hours. Generate the video again."""


class WanTimeoutError(WanRetryableError):
    """We stopped waiting for a task that may still be running; a retry re-attaches to it instead of paying again."""


class WanTransferIntegrityError(WanRetryableError):
    """
    A video copy did not verify (byte count or checksum), or its download could not be resumed; nothing was kept.

    Retryable: the next attempt downloads the video again from a fresh link.
    """


class WanCreateOutcomeUnknownError(WanFinalError):
    """
    A create request was sent but no answer came back: a task (and a bill) may exist.

    Never resent blindly. The message says how to find the task.
    """


# --- the classification table ----------------------------------------------------------------------------------
# code prefix -> class, most specific first. Anything not listed falls back on the HTTP status.
_CODE_CLASSES: tuple[tuple[str, type[WanError]], ...] = (
    ("InvalidApiKey", WanAuthError),
    ("invalid_api_key", WanAuthError),
    ("NOT AUTHORIZED", WanAuthError),
    ("AccessDenied.Unpurchased", WanBillingError),
    ("AccessDenied", WanAuthError),
    ("access_denied", WanAuthError),
    ("Model.AccessDenied", WanAuthError),
    ("App.AccessDenied", WanAuthError),
    ("Workspace.AccessDenied", WanAuthError),
    ("AllocationQuota.FreeTierOnly", WanBillingError),
    ("DataInspectionFailed", WanContentError),
    ("data_inspection_failed", WanContentError),
    ("IPInfringementSuspect", WanContentError),
    ("CustomRoleBlocked", WanContentError),
    ("FaqRuleBlocked", WanContentError),
    ("Arrearage", WanBillingError),
    ("CommodityNotPurchased", WanBillingError),
    ("PrepaidBillOverdue", WanBillingError),
    ("PostpaidBillOverdue", WanBillingError),
    ("ModelNotFound", WanModelNotFoundError),
    ("model_not_found", WanModelNotFoundError),
    ("Model.NotExist", WanModelNotFoundError),
    ("WorkSpaceNotFound", WanModelNotFoundError),
    ("InvalidURL.Timeout", WanRetryableError),
    ("InvalidParameter", WanInvalidRequestError),
    ("BadRequest", WanInvalidRequestError),
    ("InvalidURL", WanInvalidRequestError),
    ("InvalidImage", WanInvalidRequestError),
    ("InvalidFile", WanInvalidRequestError),
    ("UnsupportedOperation", WanInvalidRequestError),
    ("RequestTimeOut", WanRetryableError),
    ("Throttling", WanRetryableError),
    ("LimitRequests", WanRetryableError),
    ("limit_requests", WanRetryableError),
    ("limit_burst_rate", WanRetryableError),
    ("insufficient_quota", WanRetryableError),
    ("InternalError.Timeout", WanRetryableError),
    ("InternalError", WanRetryableError),
    ("internal_error", WanRetryableError),
    ("SystemError", WanRetryableError),
    ("ModelServiceFailed", WanRetryableError),
    ("ModelServingError", WanRetryableError),
    ("ModelUnavailable", WanRetryableError),
    ("ServiceUnavailable", WanRetryableError),
    ("GatewayTimeout", WanRetryableError),
)

# DashScope's codes: words, dots, underscores ("NOT AUTHORIZED" has a space); a number or a sentence is not one
_CODE_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_.\- ]{0,79}")

_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _class_for(status_code: int | None, code: str | None, message: str | None) -> type[WanError]:
    if message and _FREE_QUOTA_MESSAGE in message.lower():
        # 429 Throttling.AllocationQuota "Free allocated quota exceeded.": no pay-as-you-go, retrying cannot help
        return WanBillingError
    if code:
        for prefix, cls in _CODE_CLASSES:
            if code == prefix or code.startswith(prefix + "."):
                return cls
    if status_code in _RETRYABLE_STATUSES:
        return WanRetryableError
    if status_code in {401, 403}:
        return WanAuthError
    if status_code == 404:
        return WanModelNotFoundError
    return WanFinalError


def dashscope_code(value: Any) -> str | None:
    """``value`` when it looks like a DashScope error code (``InvalidParameter``, ``Throttling.RateQuota``)."""
    if isinstance(value, str) and _CODE_SHAPE.fullmatch(value):
        return value
    return None


def error_for_response(status_code: int, body: Any, *, context: str = "", task_id: str | None = None) -> WanError:
    """
    Build the error for a non-2xx DashScope response. Never raises, whatever ``body`` holds.

    :param status_code: the HTTP status
    :param body: the parsed JSON body (``{request_id, code, message}``), or a text saying what the body was when it
        was not a JSON object (the text is redacted and shortened here)
    :param context: what we were doing, prefixed to the message ("creating a task", ...)
    """
    if isinstance(body, dict):
        # a gateway's {"code": 502, "message": null} is not DashScope's error: only a code-shaped string counts
        code = dashscope_code(body.get("code"))
        message = clean_text(body.get("message")) or clean_text(body.get("msg")) or ""
        request_id = clean_text(body.get("request_id"), 100)
    else:
        code, request_id = None, None
        text = clean_text(body, 200) if isinstance(body, str) else None
        message = f"the answer was {text}" if text else "empty response body"
    cls = _class_for(status_code, code, message)
    prefix = f"DashScope refused {context}: " if context else "DashScope error: "
    return cls(
        prefix + (message or f"HTTP {status_code}"),
        http_status=status_code,
        code=code,
        request_id=request_id,
        task_id=task_id,
    )


def error_for_task_failure(
    task_id: str, code: str | None, message: str | None, request_id: str | None = None
) -> WanError:
    """Build the error for a task that ended FAILED: final unless its code says a new attempt may succeed."""
    cls = _class_for(None, code, message)
    if issubclass(cls, WanRetryableError):
        cls = WanTaskRetryableFailure
    elif cls is WanFinalError or cls is WanInvalidRequestError:
        cls = WanTaskFailedError
    text = f"DashScope task {task_id} FAILED: {message or 'no message'}"
    return cls(text, code=code, request_id=request_id, task_id=task_id)
