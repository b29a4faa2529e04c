"""A worker whose stop hangs ends at its deadline, saying where it hung (no services)."""

from __future__ import annotations

import subprocess
import sys
import time

from services.scorer.worker import STOP_DEADLINE_EXIT

HANGING_STOP = """
import asyncio, logging
from services.scorer.worker import arm_stop_deadline

logging.basicConfig()

async def stuck_in_cleanup():
    await asyncio.Event().wait()  # a cleanup that never completes

async def main():
    arm_stop_deadline(asyncio.get_running_loop(), 0.5)
    await stuck_in_cleanup()

asyncio.run(main())
"""


def test_a_hanging_stop_exits_at_the_deadline_with_the_stacks_and_tasks() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", HANGING_STOP], capture_output=True, text=True, timeout=30
    )
    took = time.monotonic() - began
    assert done.returncode == STOP_DEADLINE_EXIT, done.stderr
    assert took < 20  # the interpreter's start, then 0.5 s
    assert "stop_deadline_exceeded" in done.stderr
    assert "Thread 0x" in done.stderr  # faulthandler's dump of every thread
    assert "stuck_in_cleanup" in done.stderr  # the task that held the stop, with its stack


def test_a_stop_within_the_deadline_exits_as_it_would() -> None:
    quick = HANGING_STOP.replace("await stuck_in_cleanup()", "await asyncio.sleep(0.01)")
    done = subprocess.run([sys.executable, "-c", quick], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "stop_deadline_exceeded" not in done.stderr
