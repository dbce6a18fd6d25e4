"""Feature frontends: audio samples in, feature frames out, each frame computed once."""

from .framing import Framer, Frontend

__all__ = ["Framer", "Frontend"]
