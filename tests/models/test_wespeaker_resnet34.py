"""WeSpeaker ResNet34: checkpoint layouts, loader errors, CMN, the MLX twin, the pipeline."""

import numpy as np
import pytest
import torch

from streamer.errors import ModelError
from streamer.evaluation.synth import speech
from streamer.features.fbank import KaldiFbank
from streamer.models import Embedder, get_spec
from streamer.models.ge2e_lstm import default_weights_path
from streamer.models.wespeaker_resnet34 import ResNet34Encoder, load_resnet34
from streamer.worker import Engine
from tests.conftest import as_npz, random_resnet34, run_stream, save_pyannote


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    """Kaldi fbank of real (synthetic-voice) speech, 3.2 s."""
    return KaldiFbank().push(speech("erin", 3.2, seed=11))


@pytest.fixture(scope="module")
def windows(feats) -> np.ndarray:
    return np.stack([feats[s : s + 200] for s in (0, 60, 117)])


@pytest.fixture(scope="module")
def model(windows) -> ResNet34Encoder:
    return random_resnet34(windows)


def embed(model: torch.nn.Module, windows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(windows)).numpy()


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_pyannote_checkpoint_reproduces_the_model(model, windows, tmp_path):
    path = tmp_path / "pytorch_model.bin"
    save_pyannote(state_of(model), path)  # pickles pyannote classes, gone after saving
    with pytest.raises(ImportError):
        __import__("pyannote.audio.core.task")  # so loading must not need pyannote
    again = load_resnet34(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert np.array_equal(embed(again, windows), embed(model, windows))


def test_mlx_card_npz_reproduces_the_model(model, windows, tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, **as_npz(state_of(model)))
    again = load_resnet34(path)
    assert np.array_equal(embed(again, windows), embed(model, windows))


def test_loader_errors_say_what_is_wrong(model, tmp_path):
    with pytest.raises(ModelError, match="no WeSpeaker ResNet34 weights ship.*--weights PATH"):
        load_resnet34(None)
    with pytest.raises(ModelError, match="not found"):
        load_resnet34(tmp_path / "nope.bin")

    good = tmp_path / "good.bin"
    torch.save({"state_dict": state_of(model)}, good)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="cannot read ResNet34 weights .*truncated.bin"):
        load_resnet34(truncated)
    npz = tmp_path / "good.npz"
    np.savez(npz, **as_npz(state_of(model)))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(npz.read_bytes()[:1000])
    with pytest.raises(ModelError, match="cannot read ResNet34 weights .*cut.npz"):
        load_resnet34(cut)

    with pytest.raises(ModelError, match="pretrained.pt is not a WeSpeaker ResNet34 checkpoint"):
        load_resnet34(default_weights_path())  # the GE2E weights

    state = state_of(model)
    del state["resnet.seg_1.bias"]
    partial = tmp_path / "partial.bin"
    torch.save(state, partial)
    with pytest.raises(ModelError, match=r"missing resnet\.seg_1\.bias \(1 keys\)"):
        load_resnet34(partial)

    state = state_of(model)
    state["resnet.seg_2.weight"] = torch.zeros(256, 256)  # two_emb_layer=True
    two = tmp_path / "two.bin"
    torch.save(state, two)
    with pytest.raises(ModelError, match="resnet.seg_2.weight.*another WeSpeaker model"):
        load_resnet34(two)

    state = state_of(model)
    state["resnet.seg_1.weight"] = torch.zeros(256, 2560)
    wrong = tmp_path / "wrong.bin"
    torch.save(state, wrong)
    with pytest.raises(ModelError, match=r"seg_1.weight has shape \(256, 2560\), .*\(256, 5120\)"):
        load_resnet34(wrong)

    # An .npz with torch's conv layout is reported in the file's (MLX) layout.
    arrays = as_npz(state_of(model))
    arrays["resnet.conv1.weight"] = model.state_dict()["resnet.conv1.weight"].numpy()
    torch_layout = tmp_path / "torch_layout.npz"
    np.savez(torch_layout, **arrays)
    with pytest.raises(
        ModelError, match=r"conv1.weight has shape \(32, 1, 3, 3\), .*\(32, 3, 3, 1\)"
    ):
        load_resnet34(torch_layout)


def test_each_window_is_mean_normalised_and_left_intact(model, windows):
    shifted = windows + np.linspace(-5, 5, 80, dtype=np.float32)  # a per-band offset
    before = shifted.copy()
    a, b = embed(model, windows), embed(model, shifted)
    assert np.array_equal(shifted, before)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # Different speech gives different vectors, so the check above is not vacuous.
    assert float(a[0] @ a[2]) < 0.999


def test_mlx_twin_matches_torch(model, feats):
    pytest.importorskip("mlx.core")
    windows = np.stack([feats[:96], feats[150:246]])  # short: MLX is slow on CPU
    mlx_embed = get_spec("wespeaker-resnet34").to_mlx(model)
    ours, reference = mlx_embed(windows), embed(model, windows)
    assert ours.shape == (2, 256) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() <= 1e-4


def test_pipeline_runs_with_the_model(model, vad, tmp_path):
    spec = get_spec("wespeaker-resnet34")
    assert spec.frontend().n_features == 80 and spec.window_s == 2.0
    with pytest.raises(ModelError, match="--weights PATH"):
        Embedder(spec)
    path = tmp_path / "weights.npz"
    np.savez(path, **as_npz(state_of(model)))
    engine = Engine(Embedder(spec, path), vad)
    run_stream(engine, speech("alice", 4.0, seed=2))
    assert engine.windows_embedded >= 3
