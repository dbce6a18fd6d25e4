"""Enrolled voices on disk: one JSON file per profile, written atomically.

A profile is the mean of the unit embeddings of its speech, re-normalised; the
un-normalised sum and the count are kept so later clips extend it exactly. Profiles are
biometric data: the store folder is created ``0700`` and each file ``0600``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import ProfileError

ENV_VAR = "STREAMER_PROFILES"
FORMAT_VERSION = 1
_NAME = re.compile(r"[^\W_][\w .-]{0,63}")
_LABEL = re.compile(r"speaker-[0-9]+", re.IGNORECASE)
"""The labels the tracker gives unknown voices (``docs/events.md``)."""
TEMP_PREFIX = ".tmp-"


def check_name(name: object, *, label_ok: bool = False) -> str:
    """Return ``name`` if it may name a profile, else raise :class:`ProfileError`.

    The one name rule, applied by every path that names a profile (``streamer enroll``,
    ``track --name``, ``profiles rename``, the daemon's enroll, rename and promote):
    1-64 letters, digits, spaces, ``.``, ``_`` or ``-``, starting with a letter or digit,
    no ``..``; ``unknown`` and the unknown-voice labels ``speaker-N`` are reserved (even
    with ``force``). ``label_ok`` lets a ``speaker-N`` file through: ``track
    --save-unknown`` writes voices under their labels for the user to rename.
    """
    if (
        not isinstance(name, str)
        or not _NAME.fullmatch(name)
        or ".." in name
        or name.strip() != name
    ):
        raise ProfileError(
            f"invalid profile name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit (no path separators)"
        )
    if name.lower() == "unknown" or (not label_ok and _LABEL.fullmatch(name)):
        raise ProfileError(
            f"profile name {name!r} is reserved: 'unknown' and speaker-1, speaker-2, ... "
            "label voices nobody enrolled; pick the person's name"
        )
    return name


def default_store_path() -> Path:
    """``$STREAMER_PROFILES``, else the checkout's ``profiles/``, else a per-user data folder."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "profiles").is_dir():
        return checkout / "profiles"
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA", Path.home()))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "streamer" / "profiles"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Profile:
    """One enrolled voice for one model."""

    name: str
    model: str
    total: np.ndarray
    """Sum of the unit embeddings (not normalised)."""
    count: int
    speech_s: float
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def embedding(self) -> np.ndarray:
        """The profile vector: the mean of unit embeddings, re-normalised."""
        return (self.total / max(np.linalg.norm(self.total), 1e-12)).astype(np.float32)

    def extend(self, embeddings: np.ndarray, speech_s: float) -> None:
        """Add unit embeddings (``(n, dim)``) and the seconds of speech they came from."""
        self.total = self.total + embeddings.sum(axis=0)
        self.count += len(embeddings)
        self.speech_s += speech_s
        self.updated = _now()

    def to_json(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "model": self.model,
            "speech_s": self.speech_s,
            "count": self.count,
            "created": self.created,
            "updated": self.updated,
            "total": [float(x) for x in self.total],
        }

    @classmethod
    def from_json(cls, data: dict, source: Path) -> Profile:
        try:
            return cls(
                name=data["name"],
                model=data["model"],
                total=np.asarray(data["total"], dtype=np.float64),
                count=int(data["count"]),
                speech_s=float(data["speech_s"]),
                created=data["created"],
                updated=data["updated"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(
                f"profile file {source} is damaged ({exc!r}); remove it and enroll again"
            ) from exc


class ProfileStore:
    """A folder of profiles (``<name>.json``)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        if self.path.exists() and not self.path.is_dir():
            raise ProfileError(f"profile store {self.path} is not a folder; pass --profiles DIR")
        self.remove_orphans()

    def remove_orphans(self) -> list[Path]:
        """Delete the temp files of writes that never finished (a process killed mid-save):
        profiles are biometric data, so no stray copy stays. A temp file is named after
        the process writing it; those of live processes are left alone."""
        removed = []
        try:
            temps = list(self.path.glob(f"{TEMP_PREFIX}*.json")) if self.path.is_dir() else []
        except OSError:
            return removed
        for temp in temps:
            pid = temp.name[len(TEMP_PREFIX) :].partition("-")[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            try:
                temp.unlink()
                removed.append(temp)
            except OSError:
                pass  # gone already, or not ours to delete: names() never reads it
        return removed

    def file(self, name: str) -> Path:
        """The file that holds (or would hold) profile ``name``."""
        return self._file(name)

    def _file(self, name: str) -> Path:
        return self.path / f"{check_name(name, label_ok=True)}.json"

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        try:
            return sorted(p.stem for p in self.path.glob("*.json") if _NAME.fullmatch(p.stem))
        except OSError as exc:
            raise ProfileError(f"cannot read profile store {self.path}: {exc.strerror}") from exc

    def __contains__(self, name: str) -> bool:
        return self._file(name).is_file()

    def get(self, name: str) -> Profile:
        path = self._file(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise ProfileError(f"no profile named {name!r} in {self.path} (known: {known})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ProfileError(f"cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ProfileError(
                f"profile file {path} is damaged; remove it and enroll again"
            ) from exc
        return Profile.from_json(data, path)

    def all(self) -> list[Profile]:
        return [self.get(name) for name in self.names()]

    def for_model(self, model: str) -> list[Profile]:
        """The profiles made with ``model`` (matching never mixes models)."""
        return [p for p in self.all() if p.model == model]

    def save(self, profile: Profile) -> Path:
        """Write atomically: a temp file in the store, fsync, then rename over the old one."""
        path = self._file(profile.name)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            prefix = f"{TEMP_PREFIX}{os.getpid()}-"
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".json", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(profile.to_json(), f)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ProfileError(
                f"cannot write to profile store {self.path}: {exc.strerror}; "
                "check its permissions or pass --profiles DIR"
            ) from exc
        return path

    def remove(self, name: str) -> None:
        """Delete a profile (a damaged file too)."""
        if not self._file(name).is_file():
            self.get(name)  # raises the "no profile named" error
        try:
            self._file(name).unlink()
        except OSError as exc:
            raise ProfileError(f"cannot remove {name!r} from {self.path}: {exc.strerror}") from exc

    def rename(self, old: str, new: str) -> None:
        check_name(new)
        profile = self.get(old)
        if new in self:
            raise ProfileError(f"a profile named {new!r} exists already; remove it first")
        profile.name = new
        profile.updated = _now()
        self.save(profile)
        self._file(old).unlink()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine)."""
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: leave its file alone
    return True
