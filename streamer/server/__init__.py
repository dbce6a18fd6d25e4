"""The daemon: websocket audio in, live events out, around the sans-I/O engine.

The protocol is documented in ``docs/protocol.md``. The package, by concern:

=================  ==========================================================
``options.py``     where it listens, the token, origins, limits (units in names)
``app.py``         :class:`Server`: life cycle, streams, profiles, enrollment
``http.py``        plain HTTP on the same port: the web page, /healthz, /metrics
``connection.py``  one client: hello, audio frames, requests, errors, timeouts
``session.py``     one open stream: backpressure, arrival times, its enrollment
``runner.py``      the engine in its own thread; jobs and live-enrollment taps
``hub.py``         outboxes, subscribers, the snapshot, the overflow policy
``metrics.py``     Prometheus metrics (``GET /metrics``)
=================  ==========================================================
"""

from .options import ServerLimits, ServerOptions

__all__ = ["PROTOCOL_VERSION", "Server", "ServerLimits", "ServerOptions"]


def __getattr__(name: str):
    """``Server`` and ``PROTOCOL_VERSION`` load the daemon (torch and all) when first
    used, so the options import quickly (``streamer --help``)."""
    if name in ("PROTOCOL_VERSION", "Server"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
