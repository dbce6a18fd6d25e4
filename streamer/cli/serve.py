"""``streamer serve``: the daemon — websocket audio in, live events out (``docs/protocol.md``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import fields
from pathlib import Path

from ..errors import ConfigError, EngineError
from ..server.options import DEFAULT_HOST, DEFAULT_PORT, ServerLimits, ServerOptions
from . import add_model_options, add_profiles_option, positive_float, positive_int
from .devices import add_mic_options

TOKEN_ENV = "STREAMER_TOKEN"
log = logging.getLogger("streamer.server")

CONFIG_KEYS = (
    "host",
    "port",
    "token",
    "allow_origins",
    "batch_delay_s",
    "mic",
    "mic_rate",
    "mic_stream",
    "profiles",
    "model",
    "weights",
    "device",
    "threads",
    "workers",
    "max_batch",
    "admission",
)
"""Top-level keys of a ``--config`` TOML file; limits go in a ``[limits]`` table."""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the daemon: websocket audio in, live speaker events out",
        description=(
            "Listen for websocket clients that stream audio and clients that subscribe to "
            "the events (docs/protocol.md); optionally track the local microphone too. "
            f"Listens on {DEFAULT_HOST}:{DEFAULT_PORT} (this machine only) by default; any "
            "other address needs --token. A browser opening http://HOST:PORT/ gets a live "
            "page; GET /healthz and /metrics (Prometheus) on the same port. Ctrl-C stops it."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file with any of these options (e.g. port = 9000, [limits] max_streams = "
        "8); the command line wins",
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", help=f"address to listen on (default: {DEFAULT_HOST})")
    net.add_argument(
        "--port", type=int, help=f"TCP port (default: {DEFAULT_PORT}; 0 picks a free one)"
    )
    net.add_argument(
        "--token",
        help=f"secret clients must send; needed for a non-loopback --host (default: ${TOKEN_ENV})",
    )
    net.add_argument(
        "--allow-origin",
        action="append",
        dest="allow_origins",
        metavar="ORIGIN",
        help="a browser origin allowed to connect, e.g. http://localhost:3000 (repeatable; "
        "programs that send no Origin are always allowed)",
    )
    net.add_argument(
        "--batch-delay-s",
        type=float,
        metavar="S",
        help="least time between engine steps, so streams share batches (default: 0.05)",
    )
    cluster = parser.add_argument_group("scaling out (README: Scaling out)")
    cluster.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="serve through Ray Serve on the cluster at ADDRESS (e.g. 10.0.0.1:6379); "
        "without ADDRESS, start a local Ray instance; needs pip install 'streamer[ray]'",
    )
    cluster.add_argument(
        "--replicas",
        type=positive_int,
        metavar="N",
        help="with --ray: this many engine replicas (default: autoscale on load)",
    )
    cluster.add_argument(
        "--min-replicas",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --ray, autoscaling: the fewest replicas kept (default: 1)",
    )
    cluster.add_argument(
        "--max-replicas",
        type=positive_int,
        default=8,
        metavar="N",
        help="with --ray, autoscaling: the most replicas started (default: 8); the "
        "scaling delays are keys of `serve run streamer.ray:build_app` (README)",
    )
    mic = add_mic_options(parser, "also track the local microphone")
    mic.add_argument("--mic-stream", metavar="ID", help="the microphone's stream id (default: mic)")
    limits = parser.add_argument_group("limits (docs/protocol.md#limits-and-backpressure)")
    for f in fields(ServerLimits):
        flag = "--" + f.name.replace("_", "-")
        whole = isinstance(f.default, int) or f.name == "max_streams"
        default = "what this machine holds" if f.default is None else f"{f.default:g}"
        limits.add_argument(
            flag,
            type=positive_int if whole else positive_float,
            metavar="N",
            help=f"default: {default}",
        )
    engines = parser.add_argument_group("engines")
    engines.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="engine processes, streams sharded over them (default: one per usable core, "
        "or one per GPU with --device cuda); 1 runs the engine in the daemon's own process",
    )
    engines.add_argument(
        "--max-batch",
        type=positive_int,
        metavar="N",
        help="most windows per encoder call (default: 32 on a CPU, 512 on a GPU; 1 turns "
        "batching off)",
    )
    engines.add_argument(
        "--admission",
        choices=("on", "off"),
        help="refuse new streams with 'busy' at the measured capacity (default: on; off "
        "is for capacity benchmarks)",
    )
    add_profiles_option(parser)
    add_model_options(parser, precision="auto")  # onnxruntime: more streams (README: Capacity)
    parser.set_defaults(func=lambda args: run(args, parser))
    return parser


def load_config(path: Path) -> dict:
    """A ``--config`` TOML file, checked for unknown keys."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as exc:
            raise ConfigError("--config needs Python 3.11+ or: pip install tomli") from exc
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    known_limits = {f.name for f in fields(ServerLimits)}
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise ConfigError(f"config {path}: limits must be a table ([limits])")
    unknown = sorted(set(data) - set(CONFIG_KEYS) - {"limits"}) + sorted(
        f"limits.{k}" for k in set(limits) - known_limits
    )
    if unknown:
        raise ConfigError(
            f"config {path}: unknown key(s) {', '.join(unknown)}; known: "
            f"{', '.join(CONFIG_KEYS)} and [limits] {', '.join(sorted(known_limits))}"
        )
    return data


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServerOptions:
    """Options from the command line, then the config file, then the defaults."""
    config = load_config(args.config) if args.config else {}
    for key in CONFIG_KEYS:
        if key in config and getattr(args, key) == parser.get_default(key):
            value = config[key]
            if key in ("profiles", "weights"):
                value = Path(value)
            elif key == "mic" and isinstance(value, bool):  # mic = true: the default input
                value = "" if value else None
            setattr(args, key, value)
    limits = dict(config.get("limits", {}))
    for f in fields(ServerLimits):
        if getattr(args, f.name) is not None:
            limits[f.name] = getattr(args, f.name)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    batch_delay_s = args.batch_delay_s
    extra = {} if batch_delay_s is None else {"batch_delay_s": batch_delay_s}
    if args.admission is not None:
        extra["admission"] = args.admission in ("on", True)  # a config may say true
    try:
        return ServerOptions(
            host=args.host if args.host is not None else DEFAULT_HOST,
            port=args.port if args.port is not None else DEFAULT_PORT,
            token=token,
            allowed_origins=tuple(args.allow_origins or ()),
            limits=ServerLimits(**limits),
            **extra,
        )
    except TypeError as exc:  # a config value of the wrong type
        raise ConfigError(f"config {args.config}: {exc}") from exc


def setup_logging() -> None:
    """One line per connection and stream, on stderr."""
    logger = logging.getLogger("streamer")
    if any(getattr(h, "streamer_serve", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.streamer_serve = True
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..models import get_spec
    from ..profiles import ProfileStore
    from ..sources.mic import Microphone

    # Everything that can fail without the model, first.
    options = resolve(args, parser)
    store = ProfileStore(args.profiles)
    if args.ray is not None:
        return serve_on_ray(args, options, store)
    microphone = None
    if args.mic is not None:
        rate = get_spec(args.model).sample_rate
        microphone = Microphone(args.mic or None, args.mic_rate, target_rate=rate)
    setup_logging()
    from ..server.runner import bound_native_memory

    bound_native_memory()
    sock = listen(options.host, options.port)  # a busy port fails before the model loads
    engine = engines(args, store, options)
    return asyncio.run(serve(engine, store, options, microphone, args.mic_stream or "mic", sock))


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or a :class:`ConfigError` saying why not."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "pick another --port (or stop the daemon that uses it)"
        ) from exc


LISTEN_BACKLOG = 100
"""Connections the kernel queues before the daemon accepts them (asyncio's default)."""


def serve_on_ray(args: argparse.Namespace, options: ServerOptions, store) -> int:
    """``--ray``: deploy on a Ray cluster (``streamer.ray``) and serve until Ctrl-C."""
    if args.mic is not None:
        raise ConfigError("--mic and --ray do not go together: a cluster has no microphone")
    if args.min_replicas > args.max_replicas:
        raise ConfigError(
            f"--min-replicas {args.min_replicas} is more than --max-replicas {args.max_replicas}"
        )
    if not args.ray:
        # A local instance stays on loopback: Ray would otherwise bind its nodes to the
        # host's network address (it reads this variable when it is first imported).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        from ..ray.deploy import ClusterOptions, serve_cluster
        from ..ray.ingress import ReplicaOptions
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray Serve ({exc}): pip install 'streamer[ray]'") from exc
    from ..pipeline import PipelineOptions

    pipeline = PipelineOptions(
        model=args.model,
        weights=args.weights,
        backend="torch" if args.backend == "auto" else args.backend,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
    )
    gpus = 1.0 if (args.device or "").startswith("cuda") else 0.0
    cluster = ClusterOptions(
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        gpus_per_replica=gpus,
        # --max-streams: per replica
        **({"streams_per_replica": m} if (m := options.limits.max_streams) else {}),
    )
    replica = ReplicaOptions(pipeline, options, str(store.path.resolve()))
    setup_logging()
    return serve_cluster(args.ray or None, cluster, replica)


GPU_MAX_BATCH = 512
"""Windows per encoder call on a GPU: large batches are what keep it busy."""


def engines(args: argparse.Namespace, store, options: ServerOptions):
    """The engine (one worker: in this process) or a pool of worker processes."""
    from dataclasses import replace

    from ..server.workers import WorkerPool, cuda_count, usable_cores
    from ..worker import WorkerOptions
    from . import load_engine, pipeline_options

    gpus = cuda_count() if args.device == "cuda" else 0
    count = args.workers or gpus or usable_cores()
    max_batch = args.max_batch or (
        GPU_MAX_BATCH if (args.device or "").startswith("cuda") else None
    )
    worker = WorkerOptions() if max_batch is None else replace(WorkerOptions(), max_batch=max_batch)
    if count == 1:
        return load_engine(args, store, worker=worker)
    pipeline = pipeline_options(args, worker=worker)
    return WorkerPool(pipeline, count, options.batch_delay_s, gpus=gpus)


async def serve(
    engine, store, options: ServerOptions, microphone, mic_stream: str, sock: socket.socket
) -> int:
    from ..server import Server
    from ..server.http import page_url

    server = Server(engine, store, options, microphone=microphone, mic_stream=mic_stream)
    try:
        await server.start(sock)
    except BaseException:
        await server.close()
        raise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    names = ", ".join(server.status()["profiles"]) or f"none yet in {store.path}"
    log.info(
        "listening on ws://%s:%d (model %s, profiles: %s; %d engine worker(s), capacity about "
        "%d real-time streams; GET /healthz, /metrics); Ctrl-C stops",
        options.host,
        server.port,
        server.model,
        names,
        len(server.runners),
        server.admission.capacity(),
    )
    page = page_url(options.host, server.port, options.token)
    log.info("open %s in a browser: the live page", page)
    try:
        await server.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.close()
        log.info("stopped")
    if server.failure is not None:
        raise EngineError(f"the daemon stopped: the engine failed ({server.failure!r})")
    return 0
