"""Example clients of the streamer daemon (``docs/protocol.md``).

Run them from the repository root: ``python -m clients.stream FILE`` streams a file (or
``--mic``) to the daemon, ``python -m clients.subscribe`` prints the events of every
stream live. They use only websockets, numpy, soundfile and sounddevice — not streamer
itself — so they can be copied anywhere as a starting point.
"""
