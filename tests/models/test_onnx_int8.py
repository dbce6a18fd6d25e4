"""The GE2E encoder on onnxruntime (``--precision int8``, ``fp32-onnx``, ``auto``): its
accuracy, its disk cache, and the one-line errors or fallback when it cannot run."""

from __future__ import annotations

import importlib.util
import logging
import sys

import numpy as np
import pytest
import soundfile as sf

from streamer.errors import ConfigError
from streamer.evaluation.synth import conversation, speech
from streamer.features.ge2e_mel import GE2EMel
from streamer.models import Embedder, get_spec

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime or onnx not installed (pip install onnxruntime onnx)",
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache folder: no test reads or writes the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "streamer"


def speech_windows(count_per_voice: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """1.6 s windows of five synthetic voices and their RMS levels (dBFS)."""
    windows, levels = [], []
    for i, voice in enumerate(("alice", "bob", "carol", "dave", "erin")):
        audio = speech(voice, 4.0, seed=300 + i)
        frames = GE2EMel().push(audio)
        for start in np.linspace(0, len(frames) - 160, count_per_voice).astype(int):
            windows.append(frames[start : start + 160])
            piece = audio[start * 160 : (start + 160) * 160].astype(np.float64)
            levels.append(10 * np.log10(np.mean(piece**2) + 1e-10))
    return np.stack(windows).astype(np.float32), np.array(levels)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@needs_ort
def test_int8_embeddings_stay_close_to_fp32(embedder, cache):
    windows, levels = speech_windows()
    int8 = Embedder(embedder.spec, module=embedder.module, precision="int8")
    assert int8.describe() == "onnxruntime int8 on cpu"
    ours = int8.embed(windows.copy(), levels)
    reference = embedder.embed(windows.copy(), levels)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = cosines(ours, reference)
    assert np.median(cos) >= 0.99, np.sort(cos)[:5]
    assert cos.min() >= 0.97, np.sort(cos)[:5]


@needs_ort
def test_int8_resumes_like_fp32(embedder, cache):
    """Onset windows: one pass in pieces with the state carried, read out where windows
    end, close to fp32's windows alone; the state has the torch module's layout."""
    int8 = Embedder(embedder.spec, module=embedder.module, precision="int8")
    frames = GE2EMel().push(speech("bob", 2.0, seed=9))
    rows = np.stack([frames[:120], frames[40:160]])
    level = np.array([-38.0, -25.0])
    first, state = int8.resume(rows[:, :60].copy(), None, [60], level)
    _, fp32_state = embedder.resume(rows[:, :60].copy(), None, [60], level)
    assert state.shape == fp32_state.shape
    assert cosines(state, fp32_state).min() >= 0.99
    rest, _ = int8.resume(rows[:, 60:].copy(), state, [10, 20, 60], level)
    resumed = np.concatenate([first, rest], axis=1)
    for i, length in enumerate([60, 70, 80, 120]):
        alone = embedder.embed(rows[:, :length].copy(), level)
        assert cosines(resumed[:, i], alone).min() >= 0.98


@needs_ort
def test_the_quantised_model_is_cached_and_a_corrupt_cache_is_rebuilt(embedder, cache):
    first = Embedder(embedder.spec, module=embedder.module, precision="int8")
    path = first._twin.path
    assert first._twin.built and path.parent == cache and path.is_file()
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary files left
    stamp = path.stat().st_mtime_ns
    second = Embedder(embedder.spec, module=embedder.module, precision="int8")
    assert not second._twin.built and path.stat().st_mtime_ns == stamp
    windows, levels = speech_windows(2)
    expected = first.embed(windows.copy(), levels)
    assert np.array_equal(second.embed(windows.copy(), levels), expected)
    path.write_bytes(path.read_bytes()[:5000])  # truncated, as by a crash elsewhere
    third = Embedder(embedder.spec, module=embedder.module, precision="int8")
    assert third._twin.built
    assert np.array_equal(third.embed(windows.copy(), levels), expected)
    # Other weights, another file.
    other = Embedder(embedder.spec, module=embedder.spec.untrained(), precision="int8")
    assert other._twin.path != path and other._twin.built


@needs_ort
def test_track_with_int8_names_the_same_speakers(tmp_path, cache):
    """The whole CLI path: enroll and track with ``--precision int8``."""
    from streamer.cli import main

    store = tmp_path / "profiles"
    for i, name in enumerate(("alice", "bob")):
        sf.write(tmp_path / f"{name}.wav", speech(name, 8.0, seed=401 + i), 16_000)
        args = ["enroll", name, str(tmp_path / f"{name}.wav"), "--profiles", str(store)]
        assert main([*args, "--precision", "int8"]) == 0
    talk, _ = conversation([("alice", 6.0), ("bob", 6.0), ("alice", 5.0)], gap_s=0.6, seed=7)
    sf.write(tmp_path / "talk.wav", talk, 16_000)
    rttm = tmp_path / "talk.rttm"
    args = ["track", str(tmp_path / "talk.wav"), "--profiles", str(store), "--quiet"]
    assert main([*args, "--rttm", str(rttm), "--precision", "int8"]) == 0
    speech_s: dict[str, float] = {}
    for line in rttm.read_text().splitlines():
        fields = line.split()
        speech_s[fields[7]] = speech_s.get(fields[7], 0.0) + float(fields[4])
    assert speech_s.get("alice", 0) > 8 and speech_s.get("bob", 0) > 4, speech_s


def test_missing_onnxruntime_is_one_line_that_says_what_to_install(
    tmp_path, monkeypatch, capsys, cache
):
    sf.write(tmp_path / "talk.wav", speech("alice", 2.0, seed=1), 16_000)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if absent
    with pytest.raises(ConfigError, match=r"pip install onnxruntime onnx"):
        Embedder(get_spec("ge2e"), precision="int8")
    from streamer.cli import main

    assert main(["track", str(tmp_path / "talk.wav"), "--precision", "int8"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install onnxruntime" in err[0], err
    assert "Traceback" not in err[0]


def test_int8_options_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="no int8 version"):
        Embedder(get_spec("rf5-gru"), precision="int8")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        Embedder(get_spec("ge2e"), backend="mlx", precision="int8")
    with pytest.raises(ConfigError, match="unknown precision"):
        Embedder(get_spec("ge2e"), precision="fp16")


@needs_ort
def test_an_unwritable_cache_is_one_clear_error(embedder, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(ConfigError, match="cannot write the int8 encoder's cache"):
        Embedder(embedder.spec, module=embedder.module, precision="int8")


@needs_ort
def test_fp32_on_onnxruntime_is_the_torch_encoder(embedder, cache):
    """``fp32-onnx``: the torch encoder's arithmetic on onnxruntime, windows and onset
    passes alike, cached apart from the int8 graph."""
    ours = Embedder(embedder.spec, module=embedder.module, precision="fp32-onnx")
    assert ours.describe() == "onnxruntime fp32 on cpu" and "fp32" in ours._twin.path.name
    windows, levels = speech_windows(2)
    expected = embedder.embed(windows.copy(), levels)
    assert np.abs(ours.embed(windows.copy(), levels) - expected).max() <= 1e-5
    rows = windows[:3, :120].copy()
    first, state = ours.resume(rows[:, :60].copy(), None, [60], levels[:3])
    rest, _ = ours.resume(rows[:, 60:].copy(), state, [20, 60], levels[:3])
    torch_first, torch_state = embedder.resume(rows[:, :60].copy(), None, [60], levels[:3])
    torch_rest, _ = embedder.resume(rows[:, 60:].copy(), torch_state, [20, 60], levels[:3])
    assert np.abs(first - torch_first).max() <= 1e-5 and np.abs(rest - torch_rest).max() <= 1e-5


@pytest.fixture
def notes():
    """The lines the model loader logs (a handler on its own logger: the daemon's logging
    setup stops propagation above it)."""
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("streamer.models")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@needs_ort
def test_auto_precision_is_fp32_on_onnxruntime_where_it_runs(embedder, cache, notes):
    auto = Embedder(embedder.spec, module=embedder.module, precision="auto")
    assert auto.precision == "fp32-onnx" and auto.describe() == "onnxruntime fp32 on cpu"
    rf5 = get_spec("rf5-gru")
    assert Embedder(rf5, module=rf5.untrained(), precision="auto").precision == "fp32"
    assert not notes


@pytest.mark.parametrize("why", ["missing", "unwritable"])
def test_auto_precision_falls_back_to_torch_with_one_line(
    embedder, cache, notes, monkeypatch, tmp_path, why
):
    """When the onnxruntime encoder cannot be built, ``auto`` runs torch fp32 and says why
    in one line; a precision asked for by name still fails."""
    if why == "missing":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if absent
    else:
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    auto = Embedder(embedder.spec, module=embedder.module, precision="auto")
    assert auto.precision == "fp32" and auto.describe() == "torch on cpu"
    assert len(notes) == 1 and "torch fp32" in notes[0] and "\n" not in notes[0], notes
    windows, levels = speech_windows(1)
    expected = embedder.embed(windows.copy(), levels)
    assert np.array_equal(auto.embed(windows.copy(), levels), expected)
    with pytest.raises(ConfigError):
        Embedder(embedder.spec, module=embedder.module, precision="fp32-onnx")


def test_the_daemon_defaults_to_auto_precision_and_files_to_fp32():
    from streamer.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).precision == "auto"
    assert parser.parse_args(["track", "talk.wav"]).precision == "fp32"
