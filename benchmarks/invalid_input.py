"""
Benchmark: how fast, and in how much memory, the operators refuse hostile inputs (issue 10, acceptance 4).

Each case runs in its own fresh process (so ``ru_maxrss`` belongs to that case alone): the operator is built, then
``execute()`` is called with the hostile input and must raise ``WanInvalidInputError`` before any request. Measured
around the call: wall-clock seconds, the ``tracemalloc`` peak (every Python allocation, file reads included), and
the growth of ``ru_maxrss`` above the process's high-water mark just before the call. The call runs in a thread: one
still running after 10 s (a read that blocks, a read that never ends) is reported as blocked.

Cases: ``img_url`` set to ``/dev/zero``, ``/dev/urandom``, a symlink to ``/dev/zero``, a FIFO with no writer, a
directory, a regular file of 11 MiB (over the 10 MB limit) and of 200 MiB; ``data:`` URIs oversized (14 MiB of
text), malformed, of the wrong type; prompts with a lone surrogate and with NUL; ``duration="５"``.

    python benchmarks/invalid_input.py [--results benchmarks/RESULTS.md]

Runtime: about three minutes on 2 busy cores (one Airflow import per case).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe

SECTION_START = "<!-- benchmarks/invalid_input.py: start -->"
SECTION_END = "<!-- benchmarks/invalid_input.py: end -->"
MIB = 1024 * 1024
CASES = (
    "dev-zero",
    "dev-urandom",
    "symlink-to-dev-zero",
    "fifo",
    "directory",
    "file-11MiB",
    "file-200MiB",
    "data-uri-14MiB",
    "data-uri-malformed",
    "data-uri-wrong-type",
    "prompt-lone-surrogate",
    "prompt-nul",
    "duration-fullwidth-5",
)


def _png(width: int = 400, height: int = 400) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = (b"\x00" + b"\x80\x40\x20" * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _arguments(case: str, folder: Path) -> dict[str, object]:
    """The operator arguments of one case (files are made here, before the measurement)."""
    i2v: dict[str, object] = {"model": "wan2.5-i2v-preview", "prompt": "p"}
    if case in ("dev-zero", "dev-urandom"):
        return {**i2v, "img_url": "/dev/" + case[4:]}
    if case == "symlink-to-dev-zero":
        (folder / "frame.png").symlink_to("/dev/zero")
        return {**i2v, "img_url": str(folder / "frame.png")}
    if case == "fifo":
        os.mkfifo(folder / "frame.png")
        return {**i2v, "img_url": str(folder / "frame.png")}
    if case == "directory":
        (folder / "frame.png").mkdir()
        return {**i2v, "img_url": str(folder / "frame.png")}
    if case.startswith("file-"):
        size = int(case[5:-3]) * MIB
        with open(folder / "frame.png", "wb") as handle:
            handle.write(_png())
            handle.truncate(size)  # sparse: the read, not the disk, is what is measured
        return {**i2v, "img_url": str(folder / "frame.png")}
    if case == "data-uri-14MiB":
        return {**i2v, "img_url": "data:image/png;base64," + "A" * (14 * MIB)}
    if case == "data-uri-malformed":
        return {**i2v, "img_url": "data:image/png;base64,iVBORw0KGgo*AAAA"}
    if case == "data-uri-wrong-type":
        return {**i2v, "img_url": "data:image/webp;base64," + base64.b64encode(_png()).decode()}
    t2v: dict[str, object] = {"model": "wan2.5-t2v-preview"}
    if case == "prompt-lone-surrogate":
        return {**t2v, "prompt": "a fox \ud83e in snow"}
    if case == "prompt-nul":
        return {**t2v, "prompt": "a fox\x00"}
    if case == "duration-fullwidth-5":
        return {**t2v, "prompt": "p", "duration": "５"}
    raise ValueError(case)


def child(case: str) -> None:
    from airflow_provider_wan.exceptions import WanInvalidInputError
    from airflow_provider_wan.operators.wan import WanImageToVideoOperator, WanTextToVideoOperator

    with tempfile.TemporaryDirectory() as tmp:
        arguments = _arguments(case, Path(tmp))
        operator_class = WanImageToVideoOperator if "img_url" in arguments else WanTextToVideoOperator
        operator = operator_class(task_id="bench", wan_conn_id="wan_absent", **arguments)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outcome: dict[str, str] = {}

        def call() -> None:
            try:
                operator.execute(context={})
            except WanInvalidInputError as error:
                outcome["message"] = str(error)
            else:
                outcome["message"] = "NOT REFUSED"

        tracemalloc.start()
        started = time.perf_counter()
        # in a thread, so a read that blocks or never ends is reported instead of hanging the benchmark
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(10)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        message = outcome.get("message", "BLOCKED: still running after 10 s")
    print(json.dumps({"seconds": seconds, "peak": peak, "rss_kib": grown, "message": message}), flush=True)
    os._exit(0)  # a blocked reader thread must not keep the process alive


def run(case: str) -> dict[str, object]:
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", case], capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired:
        return {"case": case, "error": "the child process did not finish in 300 s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"case": case, "error": (done.stderr or done.stdout)[-300:]}
    return {"case": case, **json.loads(lines[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=None, help="rewrite this benchmark's section of RESULTS.md")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    rows = [run(case) for case in CASES]
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"#### {len(CASES)} hostile inputs, each in a fresh process, measured {measured}",
        "",
        "```",
        describe(),
        "```",
        "",
        "| input | refused in | tracemalloc peak | ru_maxrss growth | message starts |",
        "|---|---|---|---|---|",
    ]
    ok = True
    for row in rows:
        if "error" in row:
            ok = False
            lines.append(f"| {row['case']} | FAILED: {row['error']} | | | |")
            continue
        message = str(row["message"])
        ok = ok and not message.startswith(("NOT REFUSED", "BLOCKED")) and float(row["seconds"]) < 1.0  # type: ignore[arg-type]
        lines.append(
            f"| {row['case']} | {float(row['seconds']) * 1000:.1f} ms | {int(row['peak']) / MIB:.2f} MiB "  # type: ignore[call-overload]
            f"| {int(row['rss_kib']) / 1024:.1f} MiB | `{message[:70].replace('|', '/')}` |"  # type: ignore[call-overload]
        )
    lines += ["", f"Goal: every input refused in under 1 s, memory bounded by the limit: {'met' if ok else 'NOT met'}."]
    section = "\n".join(lines)
    print(section)
    if args.results:
        results = args.results.read_text()
        block = f"{SECTION_START}\n{section}\n{SECTION_END}"
        if SECTION_START in results:
            head, rest = results.split(SECTION_START, 1)
            results = head + block + rest.split(SECTION_END, 1)[1]
        else:
            results = (
                results.rstrip()
                + "\n\n## 8. Hostile inputs (`benchmarks/invalid_input.py`, issue 10)\n\n"
                + block
                + "\n"
            )
        args.results.write_text(results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
