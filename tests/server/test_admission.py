"""Admission control's arithmetic, on the engines' real load gauges."""

from __future__ import annotations

import time
from types import SimpleNamespace

from streamer.server.admission import Admission
from streamer.server.options import ServerLimits
from streamer.server.runner import Load


def engines(count: int, busy_cpu_s: float) -> list[SimpleNamespace]:
    """Runners whose load gauge saw ``busy_cpu_s`` of steps over its last 5 s."""
    runners = []
    for _ in range(count):
        load = Load(span_s=5.0)
        load._since -= 10.0  # measuring for longer than the span
        load.add(busy_cpu_s)
        runners.append(SimpleNamespace(load=load, stream_count=0))
    return runners


def open_streams(runners, per_runner: int, age_s: float) -> dict:
    started = time.monotonic() - age_s
    for runner in runners:
        runner.stream_count = per_runner
    return {
        f"{i}-{k}": SimpleNamespace(runner=r, started=started, lagging=False)
        for i, r in enumerate(runners)
        for k in range(per_runner)
    }


def test_a_burst_of_new_streams_is_admitted_at_the_startup_estimate():
    runners = engines(2, busy_cpu_s=0.1)
    admission = Admission(ServerLimits(), open_streams(runners, 10, age_s=1.0), runners)
    admission.calibrated([0.05, 0.05])  # 16 streams per engine at 80 %
    assert admission.capacity() == 32


def test_once_measured_the_capacity_follows_the_streams_real_cost():
    """20 settled streams per engine using 40 % of its core: 40 each at 80 %, although
    the start-up estimate said 16 (it errs low; it used to cap the measured figure and
    refuse the 33rd stream)."""
    runners = engines(2, busy_cpu_s=2.0)
    sessions = open_streams(runners, 20, age_s=6.0)
    admission = Admission(ServerLimits(), sessions, runners)
    admission.calibrated([0.05, 0.05])
    assert admission.capacity() == 80
    admission.check(opening=0)  # 40 open: room for more
