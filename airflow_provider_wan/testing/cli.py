"""``wan-simulator``: run the DashScope-compatible Wan simulator from the command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import signal
import sys
from collections.abc import Sequence

from ._config import DEFAULT_API_KEY, DEFAULT_MODERATION_WORD, Fault, SimulatorConfig
from .server import build_app, start_site

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
A local, DashScope-compatible simulator of Alibaba Cloud's Wan video-generation API, for tests and demos.
Point a client at the printed URL (e.g. dashscope.base_http_api_url = URL). Model rules come from
airflow_provider_wan.models. Test-control endpoints live under /_sim (stats, tasks, faults, reset, config)
and have NO authentication: bind to loopback only, never expose a simulator on a shared network.
"""

_FAULT_HELP = """\
arm a fault at start-up (repeatable); JSON as for POST /_sim/faults, e.g.
'{"kind": "error", "route": "create", "status": 503, "count": 2, "retry_after": 1}'.
kinds: error (canned error answer, request not processed), reset (processed, then TCP reset mid-answer),
slow (processed, answer delayed by "delay" seconds), malformed (processed, 200 with a non-JSON body),
task_fail (next created tasks end FAILED with "code"/"message"), task_unknown (next created tasks turn UNKNOWN
while RUNNING), truncate (download cut after "after_bytes"), expired (download answers 403 expired; while armed,
finished tasks read as ended more than a day ago).
API misbehaviours: answer (any "status" 200-599 with any JSON "body", or "raw" bytes; "processed" default true),
redirect ("status" 3xx to "location": "loop" or a URL), drip on an API route (processed, then "after_bytes"
bytes, default 1, every "delay" seconds), huge (processed, a 200 JSON object of "size" bytes).
routes: create, get_task, cancel, list, download, any. "count": responses affected (default 1, -1 = until cleared)
"""


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="wan-simulator", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1; keep it on loopback)")
    add("--port", type=int, default=8089, help="TCP port; 0 picks a free one (default: 8089)")
    add(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted 'Authorization: Bearer' key, repeatable (default: {DEFAULT_API_KEY})",
    )
    add(
        "--pending-seconds",
        type=float,
        default=defaults.pending_seconds,
        help=f"minimum seconds a task stays PENDING, before --time-scale (default: {defaults.pending_seconds:g})",
    )
    add(
        "--generation-seconds",
        type=float,
        default=defaults.generation_seconds,
        help=f"seconds a task stays RUNNING, before --time-scale (default: {defaults.generation_seconds:g})",
    )
    add(
        "--time-scale",
        type=float,
        default=defaults.time_scale,
        help="factor applied to --pending-seconds and --generation-seconds, e.g. 0.01 runs 100x faster "
        "(default: 1; TTLs and fault delays are not scaled)",
    )
    add(
        "--max-concurrent-tasks",
        type=int,
        default=None,
        metavar="N",
        help="tasks RUNNING at once per model; more wait in PENDING (default: the catalogue's "
        "max_concurrent_tasks per model; 0 = unlimited)",
    )
    add(
        "--create-rps",
        type=int,
        default=None,
        metavar="N",
        help="create requests per second per model before 429 Throttling.RateQuota (default: the catalogue's "
        "create_rps per model; 0 = unlimited)",
    )
    add(
        "--task-query-qps",
        type=int,
        default=defaults.task_query_qps,
        metavar="N",
        help="GET /tasks/{id} and GET /tasks per second per API key before 429 (default: "
        f"{defaults.task_query_qps}, DashScope's limit; 0 = unlimited)",
    )
    add(
        "--task-ttl-seconds",
        type=float,
        default=defaults.task_ttl_seconds,
        help="seconds after submission a task is kept; later GET answers UNKNOWN and the record is purged "
        f"(default: {defaults.task_ttl_seconds:g})",
    )
    add(
        "--link-ttl-seconds",
        type=float,
        default=defaults.link_ttl_seconds,
        help=f"seconds a video_url stays valid after the task ends; later 403 (default: {defaults.link_ttl_seconds:g})",
    )
    add(
        "--upload-ttl-seconds",
        type=float,
        default=defaults.upload_ttl_seconds,
        help="seconds an uploaded file stays resolvable as oss:// (default: "
        f"{defaults.upload_ttl_seconds:g}, DashScope's 48 hours)",
    )
    add(
        "--upload-policy-ttl-seconds",
        type=float,
        default=defaults.upload_policy_ttl_seconds,
        help=f"seconds an upload policy stays valid (default: {defaults.upload_policy_ttl_seconds:g})",
    )
    add(
        "--moderation-word",
        default=DEFAULT_MODERATION_WORD,
        help="a prompt or negative_prompt containing this word gets 400 DataInspectionFailed "
        f"(default: {DEFAULT_MODERATION_WORD})",
    )
    add(
        "--payload-bytes",
        type=int,
        default=None,
        metavar="N",
        help="serve N deterministic pseudo-random bytes per task instead of an MP4, streamed chunk by chunk "
        "(transfer benchmarks; default: a real H.264 MP4)",
    )
    add(
        "--video-fps",
        type=int,
        default=defaults.video_fps,
        help=f"frames per second of the generated MP4s (default: {defaults.video_fps})",
    )
    add(
        "--cache-dir",
        default=None,
        help="directory where encoded MP4s are also cached, shared between runs and processes (default: memory only)",
    )
    add(
        "--draw-text",
        action="store_true",
        help="draw the model and prompt on every video, text-only requests included (requests with media always "
        "get them); each distinct prompt costs one more encode",
    )
    add("--fault", action="append", default=[], metavar="JSON", help=_FAULT_HELP)
    add("--quiet", action="store_true", help="do not print one line per request on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wan-simulator`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = [Fault.from_dict(json.loads(text)) for text in args.fault]
        config = SimulatorConfig(
            api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
            pending_seconds=args.pending_seconds,
            generation_seconds=args.generation_seconds,
            time_scale=args.time_scale,
            max_concurrent_tasks=args.max_concurrent_tasks,
            create_rps=args.create_rps,
            task_query_qps=args.task_query_qps,
            task_ttl_seconds=args.task_ttl_seconds,
            link_ttl_seconds=args.link_ttl_seconds,
            upload_ttl_seconds=args.upload_ttl_seconds,
            upload_policy_ttl_seconds=args.upload_policy_ttl_seconds,
            moderation_word=args.moderation_word,
            payload_bytes=args.payload_bytes,
            video_fps=args.video_fps,
            cache_dir=args.cache_dir,
            log_requests=not args.quiet,
            draw_text=args.draw_text,
        )
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        parser.error(str(exc))
    return asyncio.run(_serve(config, faults, args.host, args.port))


async def _serve(config: SimulatorConfig, faults: list[Fault], host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner, bound = await start_site(build_app(config, faults), host, port)
    shown_host = f"[{host}]" if ":" in host else host
    print(f"wan-simulator listening on http://{shown_host}:{bound}/api/v1", flush=True)
    if config.payload_bytes is None and importlib.util.find_spec("av") is None:
        print("wan-simulator: PyAV is not installed; video downloads will fail with 500", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    print("wan-simulator stopped", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
