"""streamer on Ray Serve: streams spread over a cluster, events and profiles shared.

``streamer serve --ray [ADDRESS]`` or ``serve run streamer.ray:app``; see the README's
"Scaling out". The parts: :mod:`~streamer.ray.ingress` (the ingress deployment: the
daemon's protocol behind Serve's proxy), :mod:`~streamer.ray.engine` (the engine
deployment) and :mod:`~streamer.ray.remote` (the engines as the ingress sees them),
:mod:`~streamer.ray.routing` (Serve's router for both), :mod:`~streamer.ray.hub` (the
named actor for events and profiles), :mod:`~streamer.ray.link` (an ingress replica's
side of the hub) and :mod:`~streamer.ray.deploy` (sizes, scaling, the command).
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "app":  # built on first use: building it needs a running Ray
        from .deploy import build_app

        return build_app({})
    raise AttributeError(name)
