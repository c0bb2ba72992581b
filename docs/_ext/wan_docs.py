"""
Tables generated from the provider's code at docs build time, so the docs cannot drift from it.

* ``.. wan-models::`` (option ``:family: t2v|i2v|kf2v``): what each model accepts, from ``models.py``;
* ``.. wan-prices::``: price per second, cost of a default video, limits and the price's source, from ``models.py``;
* ``.. wan-regions::``: region -> base URL, from ``hooks/wan.py`` ``REGIONS``;
* ``.. wan-config::``: the ``[wan]`` section of ``airflow.cfg``, from the provider info (``get_provider_info.py``);
* ``.. wan-errors::``: every DashScope error code the provider classifies (``exceptions._CODE_CLASSES``) and what
  happens to it: resent by the hook or not (``hooks.classify`` + ``RetryPolicy``, evaluated, not paraphrased), then
  failed at once or left to Airflow retries, and what the same code does when a task ends FAILED;
* ``.. wan-retry-policy::``: the hook's default backoff, from ``RetryPolicy()``;
* ``.. wan-simulator-help::``: ``wan-simulator --help``, from the CLI's own parser;
* ``.. wan-error-example:: auth-401|outcome-unknown``: error messages as the hook writes them.

The one hand-kept fact here is the HTTP status DashScope's error-code page documents for each code (the provider's
code does not need it). A code added to ``_CODE_CLASSES`` without a documented status fails the build, on purpose.
"""

from __future__ import annotations

import textwrap
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

# HTTP status of each code on DashScope's error-code page (https://www.alibabacloud.com/help/en/model-studio/error-code,
# copies read 2024-2026). Two statuses where the page lists the code under both.
DOCUMENTED_STATUS: dict[str, tuple[int, ...]] = {
    "InvalidApiKey": (401,),
    "invalid_api_key": (401,),
    "NOT AUTHORIZED": (401,),
    "AccessDenied.Unpurchased": (403,),
    "AccessDenied": (403,),
    "access_denied": (403,),
    "Model.AccessDenied": (403,),
    "App.AccessDenied": (403,),
    "Workspace.AccessDenied": (403,),
    "AllocationQuota.FreeTierOnly": (403,),
    "DataInspectionFailed": (400,),
    "data_inspection_failed": (400,),
    "IPInfringementSuspect": (400,),
    "CustomRoleBlocked": (400,),
    "FaqRuleBlocked": (400,),
    "Arrearage": (400,),
    "CommodityNotPurchased": (429,),
    "PrepaidBillOverdue": (429,),
    "PostpaidBillOverdue": (429,),
    "ModelNotFound": (404,),
    "model_not_found": (404,),
    "Model.NotExist": (404,),
    "WorkSpaceNotFound": (404,),
    "InvalidURL.Timeout": (400,),
    "InvalidParameter": (400,),
    "BadRequest": (400, 413, 415),
    "InvalidURL": (400,),
    "InvalidImage": (400,),
    "InvalidFile": (400,),
    "UnsupportedOperation": (400,),
    "RequestTimeOut": (408, 500),
    "Throttling": (429,),
    "LimitRequests": (429,),
    "limit_requests": (429,),
    "limit_burst_rate": (429,),
    "insufficient_quota": (429,),
    "InternalError.Timeout": (500,),
    "InternalError": (500,),
    "internal_error": (500,),
    "SystemError": (500,),
    "ModelServiceFailed": (500,),
    "ModelServingError": (500, 503),
    "ModelUnavailable": (503,),
    "ServiceUnavailable": (503,),
    "GatewayTimeout": (504,),
}


def _rst_table(header: list[str], rows: list[list[str]], widths: str = "auto") -> list[str]:
    """A reST list-table; cells are reST (``|`` separated lines are not used)."""
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            text = cell.strip() or " "
            first, *rest = text.splitlines()
            lines.append(f"   {'* -' if i == 0 else '  -'} {first}")
            lines.extend(f"       {line}" for line in rest)
    lines.append("")
    return lines


class _GeneratedDirective(SphinxDirective):
    has_content = False

    def rst(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        source = self.get_source_info()[0] or "<wan_docs>"
        self.state.nested_parse(StringList(self.rst(), source=source), self.content_offset, container)
        return container.children


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _durations(values: tuple[int, ...]) -> str:
    special = [str(v) for v in values if v < 2]
    run = [v for v in values if v >= 2]
    if len(run) > 3 and run == list(range(run[0], run[-1] + 1)):
        return ", ".join([*special, f"{run[0]}-{run[-1]}"])
    return ", ".join(str(v) for v in values)


def _catalogue() -> list[Any]:
    from airflow_provider_wan.models import Family, get_model, models_of

    return [get_model(name) for family in Family for name in models_of(family)]


class WanModelsDirective(_GeneratedDirective):
    """What each model accepts."""

    option_spec: ClassVar[dict[str, Any]] = {"family": directives.unchanged}

    def rst(self) -> list[str]:
        from airflow_provider_wan.models import SIZE_TIERS, Family

        wanted = self.options.get("family")
        if wanted is not None and wanted not in {f.value for f in Family}:
            raise self.error(f"unknown family {wanted!r}; one of {', '.join(f.value for f in Family)}")
        rows = []
        for model in _catalogue():
            if wanted is not None and model.family.value != wanted:
                continue
            name = f"``{model.name}``"
            if model.aliases:
                name += "\n\nalias: " + ", ".join(f"``{a}``" for a in model.aliases)
            if model.sizes:
                shapes = "\n\n".join(
                    f"{tier}: " + ", ".join(f"``{s}``" for s in sizes if s in model.sizes)
                    for tier, sizes in SIZE_TIERS.items()
                    if any(s in model.sizes for s in sizes)
                )
                shapes = f"``size`` (default ``{model.default_size}``)\n\n{shapes}"
            elif model.resolutions:
                shapes = "``resolution``: " + ", ".join(f"``{r}``" for r in model.resolutions)
                shapes += f" (default ``{model.default_resolution}``)"
            else:
                shapes = "follows the input"
            if model.ratios:
                shapes += "\n\n``ratio``: " + ", ".join(f"``{r}``" for r in model.ratios)
            if model.media:
                shapes += "\n\n``media``: " + ", ".join(f"``{k}`` x{n}" for k, n in model.media.items())
            rows.append(
                [
                    name,
                    *([] if wanted else [model.family.value]),
                    shapes,
                    f"{_durations(model.durations)} (default {model.default_duration})"
                    if model.durations
                    else "follows the input",
                    f"{model.prompt_max_chars:,} / {model.negative_prompt_max_chars:,}",
                    _yes(model.supports_audio),
                    _yes(model.supports_audio_url),
                    _yes(model.supports_shot_type),
                    _yes(model.supports_template),
                ]
            )
        header = [
            "Model",
            *([] if wanted else ["Family"]),
            "Size or resolution",
            "Duration (s)",
            "Prompt / negative prompt (max chars)",
            "``audio``",
            "``audio_url``",
            "``shot_type``",
            "``template``",
        ]
        return _rst_table(header, rows)


class WanRequestSchemaDirective(_GeneratedDirective):
    """The request schema's table: every field, where it goes, its type and limits, which models take it."""

    def rst(self) -> list[str]:
        from airflow_provider_wan.schema import FIELDS, models_accepting

        rows = []
        for row in FIELDS:
            limits = []
            if isinstance(row.allowed, tuple):
                limits.append("one of " + ", ".join(f"``{v}``" for v in row.allowed))
            elif row.allowed:
                limits.append(f"per model (``{row.allowed}``)")
            if row.limit:
                limits.append(f"at most ``{row.limit}`` characters")
            if row.bounds:
                limits.append(f"[{row.bounds[0]}, {row.bounds[1]}]")
            if row.media:
                limits.append(row.media.describe())
            if row.count:
                limits.append(f"{row.count[0]}-{row.count[1]} items")
            takers = models_accepting(row.name)
            rows.append(
                [
                    f"``{row.name}``",
                    f"``{row.where.value}``",
                    row.kind.value,
                    row.doc,
                    "; ".join(limits) or " ",
                    ", ".join(takers) if takers else "none in the catalogue",
                    f"the model's ``{row.default}``" if row.default else "DashScope's",
                ]
            )
        header = ["Field", "In", "Type", "What", "Limits", "Models", "Default"]
        return _rst_table(header, rows, widths="12 8 8 18 22 24 8")


class WanMediaTypesDirective(_GeneratedDirective):
    """What each ``input.media`` item type may be."""

    def rst(self) -> list[str]:
        from airflow_provider_wan.schema import MEDIA_ITEM_REFERENCES, MEDIA_TYPE_SPECS

        rows = [[f"``{name}``", spec.describe()] for name, spec in MEDIA_TYPE_SPECS.items()]
        rows += [[f"``{name}`` (on an item)", spec.describe()] for name, spec in MEDIA_ITEM_REFERENCES.items()]
        rows.append(["``link``", "an http(s) URL, passed as given (never uploaded)"])
        return _rst_table(["Type", "What it may be"], rows)


class WanPricesDirective(_GeneratedDirective):
    """Price per second, the price of a default video, limits and sources."""

    def rst(self) -> list[str]:
        from airflow_provider_wan.models import estimate_cost_usd

        rows = []
        for model in _catalogue():
            prices = ", ".join(f"{tier} ${price:g}" for tier, price in model.prices_usd.items())
            if model.silent_prices_usd:
                silent = ", ".join(f"{tier} ${price:g}" for tier, price in model.silent_prices_usd.items())
                prices += f"\n\nwith ``audio=False``: {silent}"
            default = estimate_cost_usd(model)
            rows.append(
                [
                    f"``{model.name}``",
                    prices or "unknown",
                    "unknown" if default is None else f"${default:g}",
                    f"{model.max_concurrent_tasks} / {model.create_rps}",
                    model.price_source,
                ]
            )
        header = [
            "Model",
            "USD per generated second",
            "Default video (default size or resolution and duration)",
            "Concurrent tasks / creates per second",
            "Price source",
        ]
        return _rst_table(header, rows, widths="18 22 14 12 34")


class WanRegionsDirective(_GeneratedDirective):
    def rst(self) -> list[str]:
        from airflow_provider_wan.hooks.wan import DEFAULT_REGION, REGIONS

        rows = [
            [
                f"``{name}``" + (" (default)" if name == DEFAULT_REGION else ""),
                f"``{url}``" if url else "none: set ``workspace_id``",
                f"``https://{{workspace_id}}.{region_id}.maas.aliyuncs.com/api/v1``",
            ]
            for name, (region_id, url) in REGIONS.items()
        ]
        return _rst_table(["Region", "Base URL", "With a workspace id"], rows)


class WanConfigDirective(_GeneratedDirective):
    def rst(self) -> list[str]:
        from airflow_provider_wan.get_provider_info import get_provider_info

        options = get_provider_info()["config"]["wan"]["options"]
        rows = [
            [
                f"``{name}``\n\n``AIRFLOW__WAN__{name.upper()}``",
                option["type"],
                "(none)" if option["default"] is None else f"``{option['default']}``",
                option["description"],
            ]
            for name, option in options.items()
        ]
        return _rst_table(["Option and environment variable", "Type", "Default", "What it does"], rows, "24 8 8 60")


class WanRetryPolicyDirective(_GeneratedDirective):
    def rst(self) -> list[str]:
        from airflow_provider_wan.hooks.wan import RetryPolicy

        policy = RetryPolicy()
        return [
            f"The hook sends a request at most **{policy.max_attempts}** times in all. Before retry *n* it waits a "
            f"random time between half of and the full ``min({policy.max_delay:g}, {policy.base_delay:g} x 2^(n-1))`` "
            f"seconds, and at least the answer's ``Retry-After`` (capped at {policy.max_delay:g} s).",
            "",
        ]


def _describe_hook(statuses: tuple[int, ...], code: str | None, message: str = "") -> tuple[str, str, str]:
    """(provider error class, what the hook does on a create, what it does on a task read) for an error answer."""
    import json

    from airflow_provider_wan.exceptions import WanCreateOutcomeUnknownError
    from airflow_provider_wan.hooks.classify import Failure, classify_answer
    from airflow_provider_wan.hooks.wan import REGIONS, ApiCall, Credentials, RetryPolicy

    policy = RetryPolicy()
    credentials = Credentials(api_key="sk-...", base_url=REGIONS["singapore"], region="singapore", source="docs")
    create = ApiCall.create_task("services/aigc/video-generation/video-synthesis", {"model": "m"})
    read = ApiCall.get_task("t")
    classes, on_create, on_read = [], [], []
    for status in statuses:
        body: dict[str, Any] = {"request_id": "r", "message": message}
        if code is not None:
            body["code"] = code
        raw = json.dumps(body).encode()
        read_failure = classify_answer(read, status, {}, raw, credentials)
        create_failure = classify_answer(create, status, {}, raw, credentials)
        if not (isinstance(read_failure, Failure) and isinstance(create_failure, Failure)):
            raise ExtensionError(f"the classifier accepted an HTTP {status} error answer")
        label = f" ({status})" if len(statuses) > 1 else ""
        classes.append(f":class:`~airflow_provider_wan.exceptions.{type(read_failure.error).__name__}`")
        if isinstance(create_failure.error, WanCreateOutcomeUnknownError):
            on_create.append("not resent, unknown outcome (final)" + label)
        else:
            resent = policy.delay_for(create, 1, create_failure) is not None
            on_create.append(("resent" if resent else "not resent") + label)
        on_read.append(("resent" if policy.delay_for(read, 1, read_failure) is not None else "not resent") + label)

    def merge(values: list[str]) -> str:
        plain = {v.split(" (")[0] for v in values}
        return values[0].split(" (")[0] if len(plain) == 1 else "; ".join(values)

    return merge(classes), merge(on_create), merge(on_read)


def _then(error_class: type) -> str:
    from airflow_provider_wan.exceptions import WanFinalError, WanRetryableError

    if issubclass(error_class, WanFinalError):
        return "**fails at once** (no Airflow retry)"
    if issubclass(error_class, WanRetryableError):
        return "Airflow ``retries``"
    return "fails (Airflow ``retries`` apply)"


def _after_hook(statuses: tuple[int, ...], code: str | None, message: str = "") -> str:
    from airflow_provider_wan.exceptions import error_for_response

    outcomes = {_then(type(error_for_response(s, {"code": code, "message": message}))) for s in statuses}
    return "; ".join(sorted(outcomes))


def _as_task_failure(code: str, message: str = "") -> str:
    from airflow_provider_wan.exceptions import error_for_task_failure

    error = error_for_task_failure("t", code, message)
    return f":class:`~airflow_provider_wan.exceptions.{type(error).__name__}`: {_then(type(error))}"


class WanErrorsDirective(_GeneratedDirective):
    """Every classified DashScope code, what the hook does with it, and what Airflow then does."""

    def rst(self) -> list[str]:
        from airflow_provider_wan.exceptions import _CODE_CLASSES, _FREE_QUOTA_MESSAGE

        missing = [code for code, _ in _CODE_CLASSES if code not in DOCUMENTED_STATUS]
        if missing:
            raise ExtensionError(
                f"exceptions._CODE_CLASSES classifies {', '.join(missing)}, which docs/_ext/wan_docs.py does not know: "
                "add the HTTP status DashScope documents for each to DOCUMENTED_STATUS"
            )
        header = [
            "DashScope code (and codes starting with it and a dot)",
            "HTTP",
            "Provider error",
            "Hook, on a create",
            "Hook, on a task read",
            "Then",
            "Same code on a FAILED task",
        ]
        rows = []
        for code, _ in _CODE_CLASSES:
            statuses = DOCUMENTED_STATUS[code]
            error_class, on_create, on_read = _describe_hook(statuses, code)
            rows.append(
                [
                    f"``{code}``",
                    ", ".join(str(s) for s in statuses),
                    error_class,
                    on_create,
                    on_read,
                    _after_hook(statuses, code),
                    _as_task_failure(code),
                ]
            )
        quota_message = _FREE_QUOTA_MESSAGE.capitalize() + "."
        error_class, on_create, on_read = _describe_hook((429,), "Throttling.AllocationQuota", quota_message)
        rows.append(
            [
                f'any code whose message contains "{quota_message}"',
                "429",
                error_class,
                on_create,
                on_read,
                _after_hook((429,), "Throttling.AllocationQuota", quota_message),
                _as_task_failure("Throttling.AllocationQuota", quota_message),
            ]
        )
        for status in (400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504):
            error_class, on_create, on_read = _describe_hook((status,), None)
            then = _after_hook((status,), None)
            rows.append(["any other code, or none", str(status), error_class, on_create, on_read, then, ""])
        rows.append(["any other code", "", "", "", "", "", _as_task_failure("AnyOtherCode")])
        return _rst_table(header, rows, widths="18 6 18 12 12 16 18")


class WanErrorExampleDirective(SphinxDirective):
    """
    An error message as the provider's own code writes it: ``.. wan-error-example:: auth-401`` (a key used against
    another region's endpoint) or ``.. wan-error-example:: outcome-unknown`` (a create whose answer never came).
    """

    has_content = False
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import json

        from airflow_provider_wan.exceptions import WanError
        from airflow_provider_wan.hooks.classify import Failure, classify_answer, outcome_unknown
        from airflow_provider_wan.hooks.wan import REGIONS, ApiCall, Credentials

        call = ApiCall.create_task("services/aigc/video-generation/video-synthesis", {"model": "wan2.2-t2v-plus"})
        credentials = Credentials(
            api_key="sk-...",
            base_url=REGIONS["singapore"][1] or "",
            region="singapore",
            source="connection 'wan_default'",
        )
        kind = self.arguments[0]
        error: WanError
        if kind == "auth-401":
            body = {"request_id": "54dc32fd-968b-4aed-b6a8-ae63d6fda4d5", "code": "InvalidApiKey"}
            body["message"] = "Invalid API-key provided."
            failure = classify_answer(call, 401, {}, json.dumps(body).encode(), credentials)
            if not isinstance(failure, Failure):
                raise ExtensionError("the classifier accepted a 401 InvalidApiKey answer")
            error = failure.error
        elif kind == "outcome-unknown":
            import inspect

            from airflow_provider_wan.hooks.wan import WanHook

            # the hook's words for a read timeout, with its default (connect, read) timeouts
            read_timeout = inspect.signature(WanHook.__init__).parameters["timeout"].default[1]
            error = outcome_unknown(call, credentials, f"no answer came within {read_timeout} s")
        else:
            raise self.error(f"unknown error example {kind!r}; one of auth-401, outcome-unknown")
        text = textwrap.fill(f"{type(error).__name__}: {error}", width=110, break_on_hyphens=False)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class WanSimulatorHelpDirective(SphinxDirective):
    """``wan-simulator --help`` as a literal block."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from airflow_provider_wan.testing.cli import build_parser

        text = build_parser().format_help()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("wan-models", WanModelsDirective)
    app.add_directive("wan-prices", WanPricesDirective)
    app.add_directive("wan-request-schema", WanRequestSchemaDirective)
    app.add_directive("wan-media-types", WanMediaTypesDirective)
    app.add_directive("wan-regions", WanRegionsDirective)
    app.add_directive("wan-config", WanConfigDirective)
    app.add_directive("wan-errors", WanErrorsDirective)
    app.add_directive("wan-retry-policy", WanRetryPolicyDirective)
    app.add_directive("wan-simulator-help", WanSimulatorHelpDirective)
    app.add_directive("wan-error-example", WanErrorExampleDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
