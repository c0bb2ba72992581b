"""
Partial files of the folder sink left by a killed worker, with real files and real processes: a transfer runs in a
child process against a link that stalls after its first 64 KiB (``LinkServer``'s ``/stall``), so its partial file
``.<name>.wan-partial-<transfer id>`` is on disk; the child is killed with SIGKILL (what the OOM killer and an evicted
pod do: no ``abort`` runs). The next transfer to that name removes the file once its writer is gone (no lock held) and
it sat idle for ``STALE_PARTIAL_SECONDS``; a live writer's file (its lock held) is never removed, however old it looks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.transfers.sinks.local import STALE_PARTIAL_SECONDS, LocalSink
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator
from tests.transfer.test_hostile_links import SIGNATURE, LinkServer, _answer_with_link, _generate, links

__all__ = ["links"]  # the LinkServer fixture, shared with test_hostile_links

MODEL = "wan2.5-t2v-preview"
REPO = Path(__file__).resolve().parents[2]
_CHILD = textwrap.dedent(
    """
    import sys

    from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

    task_id, model, destination = sys.argv[1:]
    WanVideoToStorageOperator(task_id="store", wan_task_id=task_id, model=model, destination=destination).execute({})
    """
)


def _destination(folder: Path) -> str:
    return f"file://{folder}/{{wan_task_id}}.mp4"


def _transfer(folder: Path, task_id: str) -> Any:
    return WanVideoToStorageOperator(
        task_id="store", wan_task_id=task_id, model=MODEL, destination=_destination(folder)
    ).execute({})


def _partials(folder: Path, task_id: str) -> list[Path]:
    return sorted(folder.glob(f".{task_id}.mp4.wan-partial-*"))


def _stalled_transfer(sim: Any, links: LinkServer, folder: Path, task_id: str, log: Path) -> tuple[Any, Path]:
    """A transfer in a child process, stalled with its partial file on disk: (the process, the file)."""
    _answer_with_link(sim, task_id, f"{links.url}/stall?Signature={SIGNATURE}")
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, task_id, MODEL, _destination(folder)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    size = 0
    while time.monotonic() < deadline:
        written = [p for p in _partials(folder, task_id) if p.stat().st_size > 0]
        if written and written[0].stat().st_size == size:
            return child, written[0]  # the link's 64 KiB are in (its size held for 0.2 s): the child waits for more
        size = written[0].stat().st_size if written else 0
        if child.poll() is not None:
            pytest.fail(f"the child transfer ended ({child.returncode}) before it stalled:\n{log.read_text()}")
        time.sleep(0.2)
    child.kill()
    child.wait()
    pytest.fail(f"the child transfer wrote no partial file in 60 s:\n{log.read_text()}")


def _killed(child: Any) -> None:
    child.kill()  # SIGKILL: the worker gets no chance to abort its upload
    child.wait(timeout=30)


def _idle_for(path: Path, seconds: float) -> None:
    """As if nothing had been written to ``path`` for ``seconds`` (its modification time set back)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_partial_left_by_a_killed_transfer_is_removed_by_the_next_transfer_once_idle(
    wan_connection: Any, links: LinkServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    task_id = _generate()
    folder = tmp_path / "out"
    child, partial = _stalled_transfer(wan_connection, links, folder, task_id, tmp_path / "child.log")
    _killed(child)
    assert child.returncode == -9
    assert _partials(folder, task_id) == [partial], "the killed transfer's partial file is the problem to solve"

    # right after the kill: idle for less than STALE_PARTIAL_SECONDS, it could be a live writer's on a mount that keeps
    # locks to one machine; the transfer lands beside it
    first = _transfer(folder, task_id)
    assert first["uploaded"]
    assert _partials(folder, task_id) == [partial]

    # later (Airflow's default retry_delay is 300 s): unlocked and idle, it is removed, by a rerun that finds the video
    _idle_for(partial, STALE_PARTIAL_SECONDS + 1)
    second = _transfer(folder, task_id)
    assert not second["uploaded"]
    assert sorted(p.name for p in folder.iterdir()) == [f".{task_id}.mp4.wan-metadata.json", f"{task_id}.mp4"]
    out, err = capfd.readouterr()
    assert f"Removed file://{partial}" in out + err


def test_a_live_transfers_partial_is_never_removed_however_old_it_looks(
    wan_connection: Any, links: LinkServer, tmp_path: Path
) -> None:
    task_id = _generate()
    folder = tmp_path / "out"
    child, partial = _stalled_transfer(wan_connection, links, folder, task_id, tmp_path / "child.log")
    try:
        # idle for an hour: only the lock its writer holds says it is alive
        _idle_for(partial, 3600)
        # another transfer to the same name meanwhile (a manual rerun, a second DAG run)
        result = _transfer(folder, task_id)
        assert result["uploaded"]
        assert partial.exists(), "a live writer's partial file was removed"
        assert child.poll() is None
    finally:
        _killed(child)
    # its writer gone, the next transfer to the name removes it
    _idle_for(partial, 3600)
    _transfer(folder, task_id)
    assert _partials(folder, task_id) == []


def test_only_the_names_own_partial_files_are_candidates(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    stale = time.time() - STALE_PARTIAL_SECONDS - 1
    ours = folder / ".a.mp4.wan-partial-0123456789abcdef0123456789abcdef"
    other_name = folder / ".b.mp4.wan-partial-0123456789abcdef0123456789abcdef"
    not_a_transfer_id = folder / ".a.mp4.wan-partial-notes.txt"
    target = folder / "precious.mp4"
    link = folder / ".a.mp4.wan-partial-fedcba9876543210fedcba9876543210"
    directory = folder / ".a.mp4.wan-partial-1234"
    for path in (ours, other_name, not_a_transfer_id, target):
        path.write_bytes(b"x")
        os.utime(path, (stale, stale))
    link.symlink_to(target)
    directory.mkdir()
    fifo = folder / ".a.mp4.wan-partial-5678"
    os.mkfifo(fifo)  # opened without blocking, and left
    for path in (directory, fifo):
        os.utime(path, (stale, stale))

    removed = LocalSink("/").remove_leftovers([str(folder / "a.mp4").lstrip("/")])

    assert removed == [f"file://{ours}"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (other_name, not_a_transfer_id, target, link, directory, fifo)
    )
    assert target.read_bytes() == b"x"  # a link's target is never touched
    # a folder that does not exist yet holds nothing to remove
    assert LocalSink("/").remove_leftovers([str(tmp_path / "none" / "a.mp4").lstrip("/")]) == []
