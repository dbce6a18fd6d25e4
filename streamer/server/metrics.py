"""Prometheus metrics of one daemon (``GET /metrics``), in a registry of its own.

==================================  =========  ==========================================
metric                              type       what
==================================  =========  ==========================================
streamer_streams                    gauge      audio streams open
streamer_connections                gauge      websocket connections open
streamer_subscribers                gauge      connections receiving events
streamer_windows_embedded_total     counter    windows the encoder embedded
streamer_windows_per_second         gauge      the same, per second over the last 10 s
streamer_encoder_seconds            histogram  time per encoder batch
streamer_step_seconds               histogram  time per worker step (all streams)
streamer_engine_cpu_seconds_total   counter    CPU time of the engine's thread in steps
streamer_backlog_seconds            gauge      most audio any stream has waiting
streamer_audio_seconds_total        counter    audio received, seconds at the model rate
streamer_events_total{type}         counter    events published, by type
streamer_event_latency_seconds      histogram  arrival of an event's decisive audio ->
                                               the event handed to subscribers
streamer_lagging_streams            gauge      streams whose events lag over 1 s (``lagging``)
streamer_dropped_events_total       counter    events dropped for slow subscribers
streamer_backpressure_waits_total   counter    times a client was paused for the worker
streamer_mic_dropped_seconds_total  counter    microphone audio lost (worker too far behind)
==================================  =========  ==========================================

Event latency here is measured inside the daemon: from the moment the audio that
decided an event (the sample at its ``emitted_at``) was received to the moment the
event was queued for the subscribers; the network is not included. It is a histogram
(buckets up to 60 s), so its percentiles show: ``histogram_quantile(0.95,
rate(streamer_event_latency_seconds_bucket[1m]))``.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "TimedEmbedder"]

_LATENCY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_COMPUTE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.streams = Gauge("streamer_streams", "Audio streams open.", registry=r)
        self.connections = Gauge("streamer_connections", "Websocket connections open.", registry=r)
        self.subscribers = Gauge(
            "streamer_subscribers", "Connections receiving events.", registry=r
        )
        self.windows = Counter(
            "streamer_windows_embedded", "Windows the encoder embedded.", registry=r
        )
        self.windows_per_s = Gauge(
            "streamer_windows_per_second",
            "Windows embedded per second over the last 10 s.",
            registry=r,
        )
        self.windows_per_s.set_function(self._windows_rate)
        self.encoder_s = Histogram(
            "streamer_encoder_seconds",
            "Time per encoder batch.",
            buckets=_COMPUTE_BUCKETS,
            registry=r,
        )
        self.step_s = Histogram(
            "streamer_step_seconds",
            "Time per worker step over all streams.",
            buckets=_COMPUTE_BUCKETS,
            registry=r,
        )
        self.engine_cpu_s = Counter(
            "streamer_engine_cpu_seconds",
            "CPU time the engine's thread spent stepping.",
            registry=r,
        )
        self.backlog_s = Gauge(
            "streamer_backlog_seconds", "Most audio any stream has waiting.", registry=r
        )
        self.audio_s = Counter(
            "streamer_audio_seconds", "Audio received, in seconds at the model rate.", registry=r
        )
        self.events = Counter("streamer_events", "Events published, by type.", ["type"], registry=r)
        self.event_latency_s = Histogram(
            "streamer_event_latency_seconds",
            "Wall time from the arrival of an event's decisive audio to its publication.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lagging = Gauge(
            "streamer_lagging_streams",
            "Streams whose latest event came over 1 s after its audio.",
            registry=r,
        )
        self.dropped = Counter(
            "streamer_dropped_events", "Events dropped for slow subscribers.", registry=r
        )
        self.backpressure = Counter(
            "streamer_backpressure_waits",
            "Times a client's socket was paused until the worker caught up.",
            registry=r,
        )
        self.mic_dropped_s = Counter(
            "streamer_mic_dropped_seconds",
            "Microphone audio lost because the worker was too far behind.",
            registry=r,
        )
        self._recent: deque[tuple[float, int]] = deque()  # (monotonic time, windows)
        self._lock = threading.Lock()  # the worker appends, a scrape reads

    def embedded(self, count: int, seconds: float) -> None:
        self.windows.inc(count)
        self.encoder_s.observe(seconds)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, count))
            self._forget(now)

    def _windows_rate(self, span_s: float = 10.0) -> float:
        with self._lock:
            self._forget(time.monotonic(), span_s)
            return sum(count for _, count in self._recent) / span_s

    def _forget(self, now: float, span_s: float = 10.0) -> None:
        while self._recent and self._recent[0][0] < now - span_s:
            self._recent.popleft()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class TimedEmbedder:
    """Wraps an engine's embedder to time each encoder batch (the engine is left as it is)."""

    def __init__(self, inner, metrics: Metrics) -> None:
        self.inner = inner
        self.spec = inner.spec
        self._metrics = metrics

    def embed(self, windows, levels_dbfs=None):
        started = time.perf_counter()
        vectors = self.inner.embed(windows, levels_dbfs)
        self._metrics.embedded(len(windows), time.perf_counter() - started)
        return vectors

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
