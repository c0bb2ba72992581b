"""Issue 3, acceptance 4 (part): every code of the reference's error table maps to the right class."""

from __future__ import annotations

import pickle

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanBillingError,
    WanContentError,
    WanFinalError,
    WanInvalidRequestError,
    WanModelNotFoundError,
    WanRetryableError,
    WanTaskFailedError,
    WanTaskRetryableFailure,
    error_for_response,
    error_for_task_failure,
)

# (HTTP status, code, message, expected class) - from the official error-code page (facts §1.2)
TABLE = [
    (400, "InvalidParameter", "Required parameter(s) missing or invalid", WanInvalidRequestError),
    (400, "DataInspectionFailed", "Input data may contain inappropriate content.", WanContentError),
    (400, "data_inspection_failed", "Output data may contain inappropriate content.", WanContentError),
    (400, "IPInfringementSuspect", "Input data is suspected of being involved in IP infringement.", WanContentError),
    (400, "Arrearage", "Access denied, please make sure your account is in good standing.", WanBillingError),
    (400, "BadRequest.EmptyInput", "Required input parameter missing from request.", WanInvalidRequestError),
    (400, "BadRequest.EmptyParameters", "Required parameter missing", WanInvalidRequestError),
    (400, "BadRequest.EmptyModel", "Required parameter model missing", WanInvalidRequestError),
    (400, "BadRequest.IllegalInput", "The input parameter requires json format.", WanInvalidRequestError),
    (400, "BadRequest.InputDownloadFailed", "Failed to download the input file: xxx.", WanInvalidRequestError),
    (400, "InvalidURL", "Invalid URL provided in your request.", WanInvalidRequestError),
    (400, "InvalidURL.ConnectionRefused", "Connection to xxx refused", WanInvalidRequestError),
    (400, "InvalidURL.Timeout", "Download xxx timeout, please check network connection.", WanRetryableError),
    (400, "InvalidImage.FileFormat", "Invalid image format", WanInvalidRequestError),
    (400, "InvalidFile.Resolution", "The image resolution is invalid", WanInvalidRequestError),
    (400, "UnsupportedOperation", "The operation is unsupported", WanInvalidRequestError),
    (400, "CustomRoleBlocked", "blocked", WanContentError),
    (400, "FaqRuleBlocked", "blocked", WanContentError),
    (401, "InvalidApiKey", "Invalid API-key provided.", WanAuthError),
    (401, "invalid_api_key", "Invalid API-key provided.", WanAuthError),
    (401, "NOT AUTHORIZED", "Access denied", WanAuthError),
    (403, "AccessDenied", "current user api does not support synchronous calls.", WanAuthError),
    (403, "access_denied", "Access denied.", WanAuthError),
    (403, "AccessDenied.Unpurchased", "Access to model denied. Please make sure you are eligible", WanBillingError),
    (403, "Model.AccessDenied", "Model access denied.", WanAuthError),
    (403, "App.AccessDenied", "App access denied.", WanAuthError),
    (403, "Workspace.AccessDenied", "Workspace access denied.", WanAuthError),
    (403, "AllocationQuota.FreeTierOnly", "The free tier of the model has been exhausted.", WanBillingError),
    (404, "ModelNotFound", "Model not found", WanModelNotFoundError),
    (404, "model_not_found", "Model not exist.", WanModelNotFoundError),
    (404, "WorkSpaceNotFound", "WorkSpace can not be found.", WanModelNotFoundError),
    (404, "NotFound", "Not found", WanModelNotFoundError),
    (408, "RequestTimeOut", "Request timed out, please try again later.", WanRetryableError),
    (413, "BadRequest.TooLarge", "Payload Too Large", WanInvalidRequestError),
    (415, "BadRequest.UnsupportedFileFormat", "Input file format is not supported.", WanInvalidRequestError),
    (429, "Throttling", "Requests throttling triggered.", WanRetryableError),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", WanRetryableError),
    (429, "LimitRequests", "Requests rate limit exceeded", WanRetryableError),
    (429, "limit_requests", "Requests rate limit exceeded", WanRetryableError),
    (429, "Throttling.BurstRate", "Request rate increased too quickly.", WanRetryableError),
    (429, "limit_burst_rate", "Request rate increased too quickly.", WanRetryableError),
    (
        429,
        "Throttling.AllocationQuota",
        "Allocated quota exceeded, please increase your quota limit.",
        WanRetryableError,
    ),
    (429, "insufficient_quota", "Allocated quota exceeded", WanRetryableError),
    (429, "Throttling.AllocationQuota", "Free allocated quota exceeded.", WanBillingError),
    (429, "CommodityNotPurchased", "Commodity has not purchased yet.", WanBillingError),
    (429, "PrepaidBillOverdue", "The prepaid bill is overdue.", WanBillingError),
    (429, "PostpaidBillOverdue", "The postpaid bill is overdue.", WanBillingError),
    (
        500,
        "InternalError",
        "An internal error has occured, try again later or contact service support.",
        WanRetryableError,
    ),
    (500, "internal_error", "An internal error has occured", WanRetryableError),
    (500, "InternalError.Algo", "inference internal error", WanRetryableError),
    (500, "InternalError.Timeout", "An internal timeout error has occured", WanRetryableError),
    (500, "InternalError.FileUpload", "oss upload error", WanRetryableError),
    (500, "InternalError.Upload", "Failed to upload result.", WanRetryableError),
    (500, "SystemError", "An system error has occured, try again later.", WanRetryableError),
    (500, "ModelServiceFailed", "Failed to request model service.", WanRetryableError),
    (500, "RequestTimeOut", "Request timed out, please try again later.", WanRetryableError),
    (503, "ModelServingError", "Too many requests... system capacity limits.", WanRetryableError),
    (503, "ModelUnavailable", "Model is unavailable, please try again later.", WanRetryableError),
    (502, None, "", WanRetryableError),
    (504, None, "", WanRetryableError),
]


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"), TABLE, ids=[f"{r[0]}-{r[1]}-{r[2][:12]}" for r in TABLE]
)
def test_reference_code_maps_to_class(status, code, message, expected):
    body = {"request_id": "req-1", "code": code, "message": message} if code else "<html>Bad Gateway</html>"
    error = error_for_response(status, body, context="creating a task")
    assert type(error) is expected
    assert error.http_status == status
    assert error.code == code
    final = issubclass(expected, WanFinalError)
    # final errors fail the Airflow task without retries; retryable ones leave it to Airflow
    assert isinstance(error, AirflowFailException) is final
    if code:
        assert "req-1" in str(error)
        assert code in str(error)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("DataInspectionFailed", WanContentError),
        ("IPInfringementSuspect", WanContentError),
        ("InvalidParameter", WanTaskFailedError),
        ("InternalError.Algo", WanTaskRetryableFailure),
        ("InternalError", WanTaskRetryableFailure),
        ("InternalError.Timeout", WanTaskRetryableFailure),
        ("SomethingNew", WanTaskFailedError),
        (None, WanTaskFailedError),
    ],
)
def test_failed_task_code_maps_to_class(code, expected):
    error = error_for_task_failure("task-9", code, "boom", "req-9")
    assert type(error) is expected
    assert "task-9" in str(error)


def test_errors_survive_pickling():
    # Airflow ships exceptions between processes; keyword-only constructors must not break that
    error = error_for_response(400, {"request_id": "r", "code": "InvalidParameter", "message": "bad size"})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.code, copy.http_status, copy.request_id, str(copy)) == (
        error.code,
        error.http_status,
        error.request_id,
        str(error),
    )
