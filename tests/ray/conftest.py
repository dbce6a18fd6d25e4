"""A real Ray cluster on this machine: two simulated nodes on 127.0.0.1, Serve's proxy
on a free port, the streamer application deployed by each test module: two ingress
replicas (no CPU of their own) in front of the engine replicas (two fixed ones, one
CPU each, so one on each node; or autoscaling ones).

Ray and Serve start once for the package (the engine replicas each load the model,
about a minute on a loaded 2-core machine); the profile store is a fresh folder
holding alice and bob. Tests talk to the proxy with the daemon tests' client. Ray's
workers inherit this process's environment (``PYTHONPATH`` too), so they import the
same streamer as the tests.
"""

from __future__ import annotations

import contextlib
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need ray[serve]: pip install -e '.[ray]'")
serve = pytest.importorskip("ray.serve", reason="the Ray tests need ray[serve]")

from streamer.pipeline import PipelineOptions  # noqa: E402
from streamer.profiles import Profile, ProfileStore  # noqa: E402
from streamer.ray.deploy import APP_NAME, ClusterOptions, build  # noqa: E402
from streamer.ray.engine import ENGINE, INGRESS  # noqa: E402
from streamer.ray.hub import NAMESPACE  # noqa: E402
from streamer.ray.ingress import ReplicaOptions  # noqa: E402
from streamer.server.options import ServerOptions  # noqa: E402
from tests.server.conftest import Client  # noqa: E402

DEPLOY_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_states(deployment: str = ENGINE) -> dict:
    app = serve.status().applications.get(APP_NAME)
    return app.deployments[deployment].replica_states if app else {}


def wait_running(engines: int, ingresses: int) -> None:
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    wanted = {ENGINE: {"RUNNING": engines}, INGRESS: {"RUNNING": ingresses}}
    while (states := {d: replica_states(d) for d in wanted}) != wanted:
        assert time.monotonic() < deadline, f"replicas did not start: {states}"
        time.sleep(1.0)


def start_cluster(attempts: int = 3):
    """Two nodes of one CPU each. A raylet gets 30 s to start (fixed in Ray); on a busy
    machine it sometimes needs another try."""
    from ray.cluster_utils import Cluster

    for attempt in range(attempts):
        cluster = Cluster()
        try:
            cluster.add_node(num_cpus=1, include_dashboard=False)
            cluster.add_node(num_cpus=1)
            return cluster
        except Exception:
            cluster.shutdown()
            if attempt == attempts - 1:
                raise


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory, voice_profiles):
    """Ray on two nodes and Serve's proxy (``.port``), for every test module here;
    ``.store`` is the profile folder the hub writes, holding alice and bob."""
    store = ProfileStore(tmp_path_factory.mktemp("cluster") / "profiles")
    for name in ("alice", "bob"):
        vector = voice_profiles[name].astype(np.float64)
        store.save(Profile(name, "ge2e", total=vector, count=1, speech_s=8.0))
    cluster = start_cluster()
    try:
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
        assert addresses == {"127.0.0.1"}, f"the test cluster left loopback: {addresses}"
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        yield SimpleNamespace(port=port, store=store)
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


@contextlib.contextmanager
def deployed(ray_cluster, options: ClusterOptions, running: int):
    """The streamer application, scaled by ``options``, once ``running`` engine replicas
    (and every ingress replica) run; deleted afterwards (the next module deploys its own)."""
    replica = ReplicaOptions(
        PipelineOptions(backend="torch"), ServerOptions(), str(ray_cluster.store.path)
    )
    serve.run(build(options, replica), name=APP_NAME, route_prefix="/", blocking=False)
    try:
        wait_running(running, options.ingress_replicas)
        yield ray_cluster
    finally:
        serve.delete(APP_NAME)


@pytest.fixture(scope="module")
def proxy(ray_cluster):
    """Serve's proxy (``.port``) in front of two ingress replicas and two engine
    replicas, one on each node."""
    with deployed(ray_cluster, ClusterOptions(replicas=2, cpus_per_replica=1.0), 2) as cluster:
        yield cluster


async def status_of(client: Client) -> dict:
    """The ``status`` of the ingress replica serving a connection."""
    await client.send({"type": "status", "id": "which"})
    return await client.next("status")


async def replica_of(client: Client) -> str:
    """The ingress replica serving a connection."""
    return (await status_of(client))["replica"]


async def open_stream(proxy) -> tuple[Client, str, str, str, str]:
    """A stream connection with its events: (client, stream id, its ingress replica, its
    engine replica, the engine's node)."""
    client = await Client.connect(proxy)
    ready = await client.hello("stream", events=True)
    client.listen()
    status = await status_of(client)
    stream = next(s for s in status["streams"] if s["stream"] == ready["stream"])
    return client, ready["stream"], status["replica"], stream["engine"], stream["node"]
