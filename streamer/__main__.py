"""``python -m streamer``: the same as the ``streamer`` command."""

from .cli import main

raise SystemExit(main())
