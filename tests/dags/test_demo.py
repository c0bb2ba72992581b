"""The README's first command: ``python scripts/demo.py`` (what ``make demo`` runs), end to end, locally."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone too: it only waits for its parent (the demo, which has exited) to be reaped
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" in status.read_text()


def test_demo_ends_with_a_playable_video_and_a_poster(tmp_path: Path) -> None:
    import av

    # nothing of the test session's Airflow, nor any real key or bucket: the local mode
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "DASHSCOPE_", "WAN_", "STORAGE_EMULATOR_HOST"))
    }
    env["WAN_DEMO_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    summary = dict(re.findall(r"^   ([a-zA-Z ]+?)\s+: (.+)$", result.stdout, re.M))
    task_id = summary["DashScope task id"]
    assert summary["model"].startswith("wan2.2-t2v-plus")
    assert summary["size"].startswith("832*480 (decoded: 832x480")
    assert summary["estimated cost"].startswith("$0.1000")
    assert summary["GCS object"].startswith(f"gs://wan-demo/wan/example_wan_text_to_video/{task_id}.mp4")

    video = Path(summary["local video"])
    poster = Path(summary["poster frame"])
    assert video == tmp_path / f"{task_id}.mp4"
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 40  # 5 s at the simulator's 8 frames per second
    data = poster.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", data[16:24]) == (832, 480)

    # no secret in the output: neither the key it gave the simulator nor a signed link
    assert "sk-wan-demo-local" not in output
    assert "Signature=" not in output
    # every process it started is gone
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", result.stdout)]
    assert len(pids) >= 2
    assert all(_gone(pid) for pid in pids), pids
