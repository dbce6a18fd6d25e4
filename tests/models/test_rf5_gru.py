"""rf5-gru: the encoder against the reference computation, its loader, its MLX twin, and the
pipeline at its 22 050 Hz (the VAD gets 16 kHz through a resampler)."""

import re

import numpy as np
import pytest
import soxr
import torch

from streamer.errors import ConfigError, ModelError
from streamer.evaluation.synth import conversation, speech
from streamer.features.tacotron_mel import TacotronMel
from streamer.models import Embedder, get_spec
from streamer.models.rf5_gru import load_rf5_gru
from streamer.worker import Engine, WorkerOptions
from tests.conftest import run_stream
from tests.features.test_tacotron_mel import librosa_log_mel


@pytest.fixture(scope="module")
def rf5(rf5_checkpoint) -> Embedder:
    return Embedder(get_spec("rf5-gru"), rf5_checkpoint, backend="torch")


def reference_embeddings(checkpoint, mels: np.ndarray) -> np.ndarray:
    """simple-speaker-embedding's forward written out with plain torch layers: normalise
    with min_log_value -11.52, GRU, last frame, projection, L2."""
    state = torch.load(checkpoint, weights_only=True)
    gru = torch.nn.GRU(80, 768, 3, batch_first=True)
    projection = torch.nn.Linear(768, 256)
    gru.load_state_dict({k[16:]: v for k, v in state.items() if k.startswith("model.rnn_stack.")})
    projection.load_state_dict(
        {k[17:]: v for k, v in state.items() if k.startswith("model.projection.")}
    )
    normer = 11.52 / 2
    with torch.no_grad():
        out, _ = gru((torch.from_numpy(mels) + normer) / normer)
        raw = projection(out[:, -1])
        return (raw / raw.norm(dim=1, keepdim=True)).numpy()


def test_streamed_features_through_encoder_match_reference(rf5, rf5_checkpoint):
    audio = speech("bob", 3.0, seed=4, sample_rate=22050)
    frontend = TacotronMel()
    frames = np.concatenate([frontend.push(audio[i : i + 441]) for i in range(0, len(audio), 441)])
    mels = librosa_log_mel(audio).astype(np.float32)
    starts = [0, 50, len(frames) - 172]
    reference = reference_embeddings(rf5_checkpoint, np.stack([mels[s : s + 172] for s in starts]))
    ours = rf5.embed(np.stack([frames[s : s + 172] for s in starts]))
    assert np.abs(ours - reference).max() <= 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_loader_round_trips_the_published_layout(rf5, rf5_checkpoint):
    state = torch.load(rf5_checkpoint, weights_only=True)
    loaded = rf5.module.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_loader_rejects_bad_files(tmp_path, rf5_checkpoint):
    with pytest.raises(ModelError, match="no bundled weights; pass --weights PATH .*gru-wrapped"):
        load_rf5_gru(None)
    with pytest.raises(ModelError, match="not found"):
        load_rf5_gru(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read rf5-gru weights"):
        load_rf5_gru(junk)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(rf5_checkpoint.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="cannot read rf5-gru weights .*not truncated"):
        load_rf5_gru(truncated)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ModelError, match="holds no state dict"):
        load_rf5_gru(tensor)
    ge2e = tmp_path / "pretrained.pt"  # another model's checkpoint
    torch.save({"step": 1, "model_state": {"lstm.weight_ih_l0": torch.zeros(1024, 40)}}, ge2e)
    with pytest.raises(
        ModelError,
        match="not a rf5-gru checkpoint: missing model.projection.bias.*it holds model_state, step",
    ):
        load_rf5_gru(ge2e)
    state = torch.load(rf5_checkpoint, weights_only=True)
    two_layers = tmp_path / "two-layers.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("_l2")}, two_layers)
    with pytest.raises(ModelError, match="missing model.rnn_stack.bias_hh_l2"):
        load_rf5_gru(two_layers)
    narrow = tmp_path / "narrow.pth"
    torch.save({**state, "model.projection.weight": torch.zeros(128, 768)}, narrow)
    with pytest.raises(ModelError, match=r"model.projection.weight has shape \(128, 768\)"):
        load_rf5_gru(narrow)


def test_mlx_twin_matches_torch(rf5):
    pytest.importorskip("mlx.core")
    audio = speech("carol", 2.5, seed=6, sample_rate=22050)
    frames = TacotronMel().push(audio)
    windows = np.stack([frames[:172], frames[-172:]])
    twin = Embedder(rf5.spec, backend="mlx", module=rf5.module)
    assert twin.describe().startswith("mlx on ")
    assert np.abs(twin.embed(windows.copy()) - rf5.embed(windows.copy())).max() <= 1e-4


@pytest.mark.parametrize("backend", ["torch", "mlx"])
def test_resuming_gives_the_windows_that_end_there(rf5, backend):
    if backend == "mlx":
        pytest.importorskip("mlx.core")
    encoder = Embedder(rf5.spec, backend=backend, module=rf5.module)
    frames = TacotronMel().push(speech("alice", 2.5, seed=3, sample_rate=22050))
    rows = np.stack([frames[:100], frames[50:150]])
    first, state = encoder.resume(rows[:, :52].copy(), None, [52])
    rest, _ = encoder.resume(rows[:, 52:].copy(), state, [8, 48])
    resumed = np.concatenate([first, rest], axis=1)
    for i, length in enumerate([52, 60, 100]):
        assert np.abs(resumed[:, i] - rf5.embed(rows[:, :length].copy())).max() <= 1e-5


def test_window_definition():
    spec = get_spec("rf5-gru")
    assert (spec.sample_rate, spec.frame_hop_samples, spec.window_frames) == (22050, 256, 172)
    assert spec.window_s == pytest.approx(2.0, abs=0.01)
    assert spec.hop_s == pytest.approx(17 * 256 / 22050)
    assert spec.target_level_dbfs is None  # log features: no level normalisation


def test_a_hop_is_rounded_to_whole_frames(rf5, vad, make_engine):
    engine = Engine(rf5, vad, WorkerOptions(hop_s=0.2))  # 17.23 frames of 11.6 ms
    assert engine.hop_frames == 17
    assert engine.tracker_options.hop_s == pytest.approx(17 * 256 / 22050)
    assert make_engine(options=WorkerOptions(hop_s=0.155)).hop_frames == 16  # 15.5 frames
    assert Engine(rf5, vad, WorkerOptions(hop_s=0.01161)).hop_frames == 1
    assert Engine(rf5, vad, WorkerOptions(hop_s=172 * 256 / 22050)).hop_frames == 172
    for hop_s, limit in ((0.0116, "at least one frame (11.61 ms)"), (2.0, "window (1996.92 ms)")):
        with pytest.raises(ConfigError, match=re.escape(limit)) as error:
            Engine(rf5, vad, WorkerOptions(hop_s=hop_s))
        assert str(error.value).startswith(f"a hop of {hop_s * 1000:g} ms does not fit rf5-gru")


def speech_regions(events) -> list[tuple[float, float]]:
    return [(e.start_s, e.end_s) for e in events if e.type == "speech_end"]


def test_pipeline_at_22050_hz_finds_the_speech_the_16_khz_vad_does(rf5, make_engine, vad):
    audio_16k, turns = conversation([("alice", 3.0), ("bob", 2.5)], gap_s=0.8, seed=7)
    audio = soxr.resample(audio_16k, 16000, 22050).astype(np.float32)
    events = run_stream(Engine(rf5, vad), audio, chunk=441)
    native = speech_regions(run_stream(make_engine(), audio_16k))
    regions = speech_regions(events)
    assert len(regions) == len(native) == len(turns)
    assert np.abs(np.array(regions) - np.array(native)).max() <= 0.033  # one VAD chunk
    windows = [e for e in events if e.type == "speaker"]
    assert windows and all(e.emitted_at >= e.end_s for e in events)
    # The same events whatever the chunking (the resampler is chunk-invariant).
    # (compared as sent: batches of other sizes may differ in the last float bits)
    again = run_stream(Engine(rf5, vad), audio, chunk=3000, step_every=3)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in events]
