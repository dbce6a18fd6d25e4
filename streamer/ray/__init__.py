"""streamer on Ray Serve: streams spread over a cluster, events and profiles shared.

``streamer serve --ray [ADDRESS]`` or ``serve run streamer.ray:app``; see the README's
"Scaling out". The parts: :mod:`~streamer.ray.replica` (the Serve deployment, the
daemon's protocol behind Serve's proxy), :mod:`~streamer.ray.hub` (the named actor for
events and profiles), :mod:`~streamer.ray.link` (a replica's side of the hub) and
:mod:`~streamer.ray.deploy` (sizes, scaling, the command).
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "app":  # built on first use: building it needs a running Ray
        from .deploy import build_app

        return build_app({})
    raise AttributeError(name)
