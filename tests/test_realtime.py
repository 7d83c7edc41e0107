"""[realtime] really changes how the OS schedules the daemon, or says clearly why it cannot."""

import json
import os
import subprocess
import sys

import pytest

from stream_decoder.stream.config import RealtimeConfig

PROBE = """
import json, os, sys
from stream_decoder.stream.config import RealtimeConfig
from stream_decoder.stream.realtime import apply_realtime
try:
    applied = apply_realtime(RealtimeConfig(priority=5, cpus=(0,), lock_memory=True))
except RuntimeError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
print(json.dumps({"applied": applied, "policy": os.sched_getscheduler(0),
                  "priority": os.sched_getparam(0).sched_priority, "cpus": sorted(os.sched_getaffinity(0))}))
"""


def probe() -> dict:
    """Apply in a child: the test process itself must not become a real-time task."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_fifo_pinning_and_locking_take_effect_or_the_error_says_how_to_allow_them():
    got = probe()
    if "error" in got:  # not root, no LimitRTPRIO / LimitMEMLOCK here: the message must say what to do
        assert "[realtime]" in got["error"]
        assert "LimitRTPRIO" in got["error"] or "LimitMEMLOCK" in got["error"]
        return
    assert got["policy"] == os.SCHED_FIFO and got["priority"] == 5 and got["cpus"] == [0]
    assert got["applied"] == {"policy": "fifo", "priority": 5, "cpus": "0", "memory_locked": True}


def test_normal_scheduling_changes_nothing():
    from stream_decoder.stream.realtime import apply_realtime

    before = (os.sched_getscheduler(0), os.sched_getaffinity(0))
    applied = apply_realtime(RealtimeConfig())
    assert applied["policy"] == "normal" and (os.sched_getscheduler(0), os.sched_getaffinity(0)) == before


def test_an_unprivileged_fifo_request_is_refused_with_the_fix(monkeypatch):
    from stream_decoder.stream import realtime

    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(realtime.os, "sched_setscheduler", refuse)
    with pytest.raises(RuntimeError, match=r"\[realtime\] priority 50: .*LimitRTPRIO=50"):
        realtime.set_fifo(50)
