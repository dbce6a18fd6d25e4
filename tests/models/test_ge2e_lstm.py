"""The GE2E encoder against the reference computation, and its weight loader."""

import librosa
import numpy as np
import pytest
import torch

from streamer.errors import ModelError
from streamer.evaluation.synth import speech
from streamer.features.ge2e_mel import GE2EMel
from streamer.models import Embedder
from streamer.models.ge2e_lstm import default_weights_path, load_ge2e
from tests.conftest import run_stream


def reference_embeddings(audio: np.ndarray, starts: list[int]) -> np.ndarray:
    """resemblyzer's computation written out: librosa mel of the whole signal, then the
    LSTM -> last hidden -> Linear -> ReLU -> L2 of its pretrained.pt, on 160-frame slices."""
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    mel = mel.astype(np.float32).T
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)["model_state"]
    lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
    linear = torch.nn.Linear(256, 256)
    lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
    with torch.no_grad():
        _, (hidden, _) = lstm(torch.from_numpy(np.stack([mel[s : s + 160] for s in starts])))
        raw = torch.relu(linear(hidden[-1]))
        return (raw / raw.norm(dim=1, keepdim=True)).numpy()


def test_streamed_features_through_encoder_match_reference(embedder):
    audio = speech("bob", 5.0, seed=4)
    frontend = GE2EMel()
    frames = np.concatenate([frontend.push(audio[i : i + 320]) for i in range(0, len(audio), 320)])
    starts = list(range(0, len(frames) - 160, 37))
    reference = reference_embeddings(audio, starts)
    with torch.no_grad():
        ours = embedder.module(torch.from_numpy(np.stack([frames[s : s + 160] for s in starts])))
    assert np.abs(ours.numpy() - reference).max() <= 1e-5


def test_mlx_twin_matches_torch(embedder):
    pytest.importorskip("mlx.core")
    audio = speech("alice", 3.0, seed=8)
    frames = GE2EMel().push(audio)
    windows = np.stack([frames[:160], frames[70:230], frames[-160:]])
    level = np.full(3, -42.0)  # the level normalisation applies on both backends
    twin = Embedder(embedder.spec, backend="mlx", module=embedder.module)
    ours = twin.embed(windows.copy(), level)
    assert np.abs(ours - embedder.embed(windows.copy(), level)).max() <= 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "mlx"])
def test_resuming_gives_the_windows_that_end_there(embedder, backend):
    """Windows sharing a start: one pass in pieces, state carried, equals each window alone."""
    if backend == "mlx":
        pytest.importorskip("mlx.core")
    encoder = Embedder(embedder.spec, backend=backend, module=embedder.module)
    frames = GE2EMel().push(speech("bob", 2.0, seed=9))
    rows = np.stack([frames[:120], frames[40:160]])
    level = np.array([-38.0, -25.0])
    first, state = encoder.resume(rows[:, :60].copy(), None, [60], level)
    rest, _ = encoder.resume(rows[:, 60:].copy(), state, [10, 20, 60], level)
    resumed = np.concatenate([first, rest], axis=1)
    # The zero state is the start: fresh and resumed rows can share a batch.
    from_zero, _ = encoder.resume(rows[:, :60].copy(), np.zeros_like(state), [60], level)
    assert np.abs(from_zero - first).max() <= 1e-6
    for i, length in enumerate([60, 70, 80, 120]):
        alone = embedder.embed(rows[:, :length].copy(), level)
        assert np.abs(resumed[:, i] - alone).max() <= 1e-5


def test_level_normalisation_makes_windows_gain_invariant(embedder):
    audio = speech("carol", 2.0, seed=5)
    frames = GE2EMel().push(audio)[:160]
    level = 10 * np.log10(np.mean(audio[: 160 * 160] ** 2))
    quiet = frames * 0.01  # the same audio 20 dB lower
    a = embedder.embed(frames[None].copy(), np.array([level]))
    b = embedder.embed(quiet[None].copy(), np.array([level - 20]))
    assert np.abs(a - b).max() < 1e-4
    # Without normalisation the encoder is far from gain invariant.
    raw = embedder.embed(frames[None].copy()), embedder.embed(quiet[None].copy())
    assert float(raw[0][0] @ raw[1][0]) < 0.95


def test_loader_rejects_bad_files(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match="not found"):
        load_ge2e(missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        load_ge2e(junk)
    partial = tmp_path / "partial.pt"
    torch.save({"model_state": {"linear.weight": torch.zeros(256, 256)}}, partial)
    with pytest.raises(ModelError, match="not a GE2E checkpoint: missing linear.bias, lstm"):
        load_ge2e(partial)
    wrong = tmp_path / "wrong.pt"
    state = load_ge2e().state_dict()
    state["linear.weight"] = torch.zeros(128, 256)
    torch.save({"model_state": state}, wrong)
    with pytest.raises(ModelError, match=r"linear.weight has shape \(128, 256\)"):
        load_ge2e(wrong)


def test_loader_round_trips_a_checkpoint_in_the_published_layout(tmp_path):
    model = load_ge2e()
    path = tmp_path / "copy.pt"
    torch.save({"step": 1, "model_state": model.state_dict()}, path)
    again = load_ge2e(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])


def test_run_stream_helper_is_usable(make_engine):
    # Silence through the full pipeline: no speech, so no events at all.
    assert run_stream(make_engine(), np.zeros(16000 * 3, np.float32)) == []
