"""Every error streamer raises on purpose.

The hierarchy::

    StreamerError                 base: a one-line message that says what to do
    ├── AudioError                an input file or audio chunk that cannot be used
    ├── ProfileError              the profile store or a profile (name, model, file)
    ├── ModelError                model weights that are missing, wrong or mismatched
    ├── ConfigError               an option with an impossible value
    ├── NoSpeechError             audio that holds no speech where speech is required
    └── ProtocolError             a daemon client's message that breaks docs/protocol.md

The CLI prints ``str(error)`` on one line and exits non-zero; the daemon sends it
to the client as a JSON error. Anything else escaping is a bug.
"""

from __future__ import annotations


class StreamerError(Exception):
    """Base class: the message is one line that says what was wrong and what would work."""


class AudioError(StreamerError):
    """Audio that cannot be read or used (missing, empty, corrupt, unsupported)."""


class ProfileError(StreamerError):
    """A profile or the profile store cannot be used as asked."""


class ModelError(StreamerError):
    """Model weights are missing, malformed or belong to another model."""


class ConfigError(StreamerError):
    """An option has a value that cannot work."""


class NoSpeechError(StreamerError):
    """The audio holds no speech where speech is needed (e.g. enrollment)."""


class ProtocolError(StreamerError):
    """A message from a daemon client that breaks the protocol (``docs/protocol.md``).

    ``code`` is the machine-readable error code the daemon sends with the message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
