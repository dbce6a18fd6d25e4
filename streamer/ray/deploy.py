"""Deploying streamer on Ray Serve: the hub actor, the ingress and engine deployments,
their sizes and scaling.

``streamer serve --ray [ADDRESS]`` calls :func:`serve_cluster`; ``serve run
streamer.ray:app`` (defaults) or ``serve run streamer.ray:build_app profiles=DIR ...``
(or a Serve config file naming ``streamer.ray:build_app``) deploy the same application.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, fields, replace

import ray
from ray import serve

from ..errors import ConfigError
from ..pipeline import PipelineOptions
from ..profiles import default_store_path
from ..server.options import ServerOptions
from .engine import EngineReplica
from .hub import NAMESPACE, start_hub
from .ingress import Ingress, ReplicaOptions

log = logging.getLogger("streamer.ray")

APP_NAME = "streamer"


@dataclass(frozen=True)
class ClusterOptions:
    """How many replicas of each deployment, of what size.

    Attributes:
        replicas: a fixed number of engine replicas; ``None`` autoscales them from
            ``min_replicas`` to ``max_replicas`` on load.
        min_replicas, max_replicas: the autoscaling range.
        streams_per_replica: the streams one engine replica holds in real time (its
            measured capacity, ``benchmarks/cluster.py``): its ``max_ongoing_requests``
            (a stream is one request; a new stream waits while every replica is full),
            and autoscaling aims at 0.8 of it.
        cpus_per_replica, gpus_per_replica: ``ray_actor_options`` of an engine replica
            (one engine per core, or per GPU).
        ingress_replicas, ingress_cpus: the ingress replicas (the protocol, no engine;
            two, so that one dying leaves the other) and the CPUs each reserves.
        batch_ms: a stream's audio goes to its engine replica at most this often, with
            that (ingress, engine) pair's other streams' (one Ray item per batch and
            pair, not per websocket message or per stream).
        proxy_location: Serve's proxies: ``EveryNode`` (a cluster) or ``HeadOnly``.
        upscale_delay_s, downscale_delay_s: how long the load must stay above (below)
            the target before a replica is added (removed).
        metrics_interval_s, look_back_s: how often the load is reported to Serve's
            controller, and the window it is averaged over.
    """

    replicas: int | None = None
    min_replicas: int = 1
    max_replicas: int = 8
    streams_per_replica: int = 24
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    ingress_replicas: int = 2
    ingress_cpus: float = 0.0
    batch_ms: float = 100.0
    proxy_location: str = "EveryNode"
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 300.0
    metrics_interval_s: float = 10.0
    look_back_s: float = 30.0


def build(cluster: ClusterOptions, replica: ReplicaOptions) -> serve.Application:
    """The Serve application: the ingress in front of the engines, sized and scaled by
    ``cluster``."""
    start_hub(replica.profiles)
    actor_options = {"num_cpus": cluster.cpus_per_replica}
    if cluster.gpus_per_replica:
        actor_options["num_gpus"] = cluster.gpus_per_replica
    scaling: dict = {"num_replicas": cluster.replicas}
    if cluster.replicas is None:
        scaling = {
            "autoscaling_config": {
                "min_replicas": cluster.min_replicas,
                "max_replicas": cluster.max_replicas,
                "target_ongoing_requests": max(1.0, 0.8 * cluster.streams_per_replica),
                "upscale_delay_s": cluster.upscale_delay_s,
                "downscale_delay_s": cluster.downscale_delay_s,
                "metrics_interval_s": cluster.metrics_interval_s,
                "look_back_period_s": cluster.look_back_s,
            }
        }
    engines = EngineReplica.options(
        ray_actor_options=actor_options,
        max_ongoing_requests=cluster.streams_per_replica,
        **scaling,
    ).bind(replica.pipeline, replica.server.batch_delay_s)
    # An ingress replica holds any number of streams: their engines are the limit.
    limits = replace(replica.server.limits, max_streams=None)
    replica = replace(replica, server=replace(replica.server, limits=limits))
    ingress = Ingress.options(
        num_replicas=cluster.ingress_replicas,
        ray_actor_options={"num_cpus": cluster.ingress_cpus},
        # each connection is one request; each engine replica holding its streams, two
        # more (its feed and its delivery)
        max_ongoing_requests=2 * replica.server.limits.max_connections,
    )
    return ingress.bind(replica, engines, cluster.batch_ms / 1000)


def build_app(args: dict) -> serve.Application:
    """``serve run streamer.ray:build_app key=value ...``: the keys of
    :class:`ClusterOptions` and ``model``, ``weights``, ``device``, ``token``."""
    names = {f.name: f for f in fields(ClusterOptions)}
    pipeline_keys = ("model", "weights", "device")
    unknown = sorted(set(args) - set(names) - set(pipeline_keys) - {"token", "profiles"})
    if unknown:
        raise ConfigError(
            f"unknown argument(s) {', '.join(unknown)}; known: "
            f"{', '.join([*names, *pipeline_keys, 'token', 'profiles'])}"
        )
    cluster = {}
    for key, value in args.items():
        if key in names and key != "proxy_location":
            floats = "pus" in key or key.endswith(("_s", "_ms"))
            value = float(value) if floats else int(value)
        if key in names:
            cluster[key] = value
    pipeline = PipelineOptions(**{k: args[k] for k in pipeline_keys if k in args}, backend="torch")
    return build(
        ClusterOptions(**cluster),
        ReplicaOptions(
            pipeline,
            # The proxy's address is Serve's (http_options); a token lets it leave loopback.
            ServerOptions(
                host="0.0.0.0" if args.get("token") else "127.0.0.1", token=args.get("token")
            ),
            str(args.get("profiles") or default_store_path()),
        ),
    )


def serve_cluster(
    address: str | None,
    cluster: ClusterOptions,
    replica: ReplicaOptions,
    stop: threading.Event | None = None,
) -> int:
    """Deploy on the Ray cluster at ``address`` (``None``: start a local one) and serve
    until Ctrl-C (or ``stop``); the proxy listens on the daemon's host and port."""
    options = replica.server
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    try:
        serve.start(
            http_options={"host": options.host, "port": options.port},
            proxy_location=cluster.proxy_location,
        )
        serve.run(build(cluster, replica), name=APP_NAME, route_prefix="/", blocking=False)
        log.info(
            "listening on ws://%s:%d through Ray Serve (GET /healthz, /metrics); Ctrl-C stops",
            options.host,
            options.port,
        )
        stop = stop or threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        serve.delete(APP_NAME)
        if address is None:
            serve.shutdown()
        ray.shutdown()
    return 0
