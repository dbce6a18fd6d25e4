"""Every error streamer raises on purpose.

The hierarchy, with the ``code`` each class carries (the daemon sends it to clients)::

    StreamerError          error      base: a one-line message that says what to do
    ├── AudioError         audio      an input file or audio chunk that cannot be used
    ├── ProfileError       profile    the profile store or a profile (name, model, file)
    ├── ModelError         model      model weights that are missing, wrong or mismatched
    ├── ConfigError        config     an option or argument with an impossible value
    ├── NoSpeechError      no_voice   audio that holds no speech where speech is required
    ├── DataError          data       a reference or data file (RTTM, UEM, corpus) unusable
    ├── SynthesisError     synthesis  espeak-ng missing or failing to speak
    ├── EngineError        engine     the engine's thread failed (a bug: the log has it)
    └── ProtocolError      (its own)  a daemon client's message that breaks docs/protocol.md

The CLI prints ``str(error)`` on one line and exits non-zero; the daemon sends
``{"type": "error", "code": error.code, "message": str(error)}`` to the client (and
closes the connection with ``error.close_code`` when that is set). Anything else
escaping is a bug.
"""

from __future__ import annotations


class StreamerError(Exception):
    """Base class: the message is one line that says what was wrong and what would work."""

    code = "error"
    close_code: int | None = None
    """A websocket close code (RFC 6455) if the daemon closes the connection after it."""
    request_id: object = None
    """The ``id`` of the daemon request it answers, when known where it was raised."""


class AudioError(StreamerError):
    """Audio that cannot be read or used (missing, empty, corrupt, unsupported)."""

    code = "audio"


class ProfileError(StreamerError):
    """A profile or the profile store cannot be used as asked."""

    code = "profile"


class ModelError(StreamerError):
    """Model weights are missing, malformed or belong to another model."""

    code = "model"


class ConfigError(StreamerError):
    """An option or argument has a value that cannot work."""

    code = "config"


class NoSpeechError(StreamerError):
    """The audio holds no speech where speech is needed (e.g. enrollment)."""

    code = "no_voice"


class DataError(StreamerError):
    """A reference or data file (RTTM, UEM, a corpus) cannot be read or is malformed."""

    code = "data"


class SynthesisError(StreamerError):
    """The synthetic voices cannot be made (espeak-ng missing or failing)."""

    code = "synthesis"


class EngineError(StreamerError):
    """The engine's thread failed; what was asked of it cannot be done."""

    code = "engine"


class ProtocolError(StreamerError):
    """A message from a daemon client that breaks the protocol (``docs/protocol.md``).

    Args:
        code: the machine-readable error code the daemon sends with the message.
        message: one line saying what would work.
        close_code: set when the daemon closes the connection after the error
            (1008 policy, 1013 try again later, 1000 normal); ``None`` keeps it open.
    """

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code
