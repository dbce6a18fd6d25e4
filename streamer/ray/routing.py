"""Serve's request router for both deployments: spread new work, pin where asked.

A request that names a replica (the keyword argument ``replica``: an engine replica
taking its stream's audio from the ingress replica that holds the stream's
connection) goes to that replica. Every other request — a new connection through the
proxy, a new stream — goes to the replica with the fewest ongoing requests, on any
node. Serve's default prefers replicas on the caller's own node until they are full
and picks among those whose load it knows, which piled every stream onto one replica.
"""

from __future__ import annotations

import random

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

PINNED = "replica"
"""The keyword argument of a call that must reach one replica: its replica id."""


class SpreadRouter(RequestRouter):
    """See the module docstring. (No ``FIFOMixin``: a replica chosen for a request is
    given to that request, never to an older one that is pinned elsewhere.)"""

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        pinned = pending_request.kwargs.get(PINNED) if pending_request is not None else None
        if pinned is not None:
            chosen = [r for r in candidate_replicas if r.replica_id.unique_id == pinned]
            # Gone: any replica answers that it does not hold the stream.
            return [chosen or candidate_replicas]
        cache = self.replica_queue_len_cache

        def load(replica: RunningReplica) -> float:
            known = cache.get(replica.replica_id)
            return -1.0 if known is None else known  # unknown: probe it first

        shuffled = random.sample(candidate_replicas, len(candidate_replicas))  # ties: random
        return [[replica] for replica in sorted(shuffled, key=load)]
