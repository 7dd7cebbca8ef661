"""kd.bin.export and kd.bin.infer end to end on a tiny trained model: onnxruntime transcripts equal the
PyTorch decode's; audio input is checked (sampling rate, channels); a foreign tokenizer is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording

from kd.bin import export as export_cli
from kd.bin import infer as infer_cli
from kd.data.datamodule import AsrDataModule, DataConfig
from kd.data.features import cuts_from_manifests
from kd.decode import decode_dataset
from kd.export.inputs import audio_utterance, cut_utterance
from kd.train.restore import load_trained_model


@pytest.fixture(scope="module")
def exported_dir(trained_exp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    args = ["--exp-dir", str(trained_exp), "--epoch", "2", "--avg", "2", "--out-dir", str(out)]
    export_cli.main([*args, "--int8", "--torchscript"])
    return out


@pytest.fixture(scope="module")
def test_cuts(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus' dev and train cuts in one file (named like a test set)."""
    cuts = CutSet.from_file(tiny.valid_cuts) + CutSet.from_file(tiny.train_cuts)
    path = tmp_path_factory.mktemp("cuts") / "tiny_cuts_test.jsonl.gz"
    cuts.to_file(path)
    return path


def pytorch_transcripts(exp: Path, cuts: Path, method: str) -> dict[str, list[str]]:
    trained = load_trained_model(exp, epoch=2, avg=2)
    loader = AsrDataModule(DataConfig(max_duration=4.0)).eval_dataloader(CutSet.from_file(cuts))
    results, _ = decode_dataset(trained.model, loader, trained.tokenizer, method)
    return {cut_id: hyp for cut_id, _, hyp in results}


def infer(capsys: pytest.CaptureFixture, *args: str) -> dict[str, list[str]]:
    """Runs kd.bin.infer; returns the words it printed per utterance id."""
    capsys.readouterr()
    infer_cli.main(list(args))
    lines = [line.split("\t", 1) for line in capsys.readouterr().out.splitlines()]
    return {utt: text.split() for utt, text in lines}


def test_export_writes_every_graph(exported_dir: Path) -> None:
    names = {p.name for p in exported_dir.iterdir() if p.is_file()}
    parts = ("encoder", "encoder_streaming", "decoder", "joiner")
    assert names == {f"{p}{suffix}" for p in parts for suffix in (".onnx", ".int8.onnx", ".pt")}


@pytest.mark.parametrize(
    ("method", "streaming", "reference"),
    [
        ("greedy_search", False, "greedy_search"),
        ("greedy_search", True, "streaming_greedy_search"),
        ("modified_beam_search", False, "modified_beam_search"),
    ],
)
def test_infer_matches_pytorch_decode(
    tiny, trained_exp: Path, exported_dir: Path, test_cuts: Path, capsys, method, streaming, reference
) -> None:
    expected = pytorch_transcripts(trained_exp, test_cuts, reference)
    res_dir = exported_dir / f"res-{method}-{streaming}"
    args = ["--model-dir", str(exported_dir), "--bpe-model", str(tiny.bpe_model), "--cuts", str(test_cuts)]
    args += ["--method", method, "--res-dir", str(res_dir), "--max-duration", "3"]
    got = infer(capsys, *args, *(["--streaming"] if streaming else []))
    assert got == expected
    if method == "modified_beam_search":
        # A model this briefly trained emits little: greedy search nothing yet (the random models of
        # test_onnx_search cover greedy search on emitting models), beam search some tokens.
        assert any(expected.values())
    tag = f"onnx_{'streaming_' if streaming else ''}{method}{'_beam_4' if 'beam' in method else ''}"
    assert (res_dir / f"wer-test-{tag}.txt").read_text().startswith(f"test\t{tag}\t%WER")
    assert (res_dir / f"recogs-test-{tag}.txt").is_file()


def test_int8_decodes(tiny, exported_dir: Path, test_cuts: Path, capsys) -> None:
    args = ["--model-dir", str(exported_dir), "--bpe-model", str(tiny.bpe_model), "--cuts", str(test_cuts)]
    got = infer(capsys, *args, "--int8", "--streaming", "--res-dir", str(exported_dir / "res-int8"))
    assert set(got) == set(CutSet.from_file(test_cuts).ids)
    assert (exported_dir / "res-int8" / "wer-test-onnx_int8_streaming_greedy_search.txt").is_file()


def test_infer_refuses_other_tokenizer(trained_exp: Path, exported_dir: Path, tmp_path: Path) -> None:
    from kd.data.tokenizer import train_bpe

    texts = [" ".join(f"{w}{i}" for w in ("SPARROW", "QUAIL", "FINCH")) for i in range(30)]
    other = train_bpe(texts, 30, tmp_path / "lang")
    with pytest.raises(ValueError, match=rf"{exported_dir}.*30 tokens.*BPE model {other} has 30 tokens"):
        infer_cli.main(["--model-dir", str(exported_dir), "--bpe-model", str(other), "x.wav"])


def tones(sampling_rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    """Three tones below 4 kHz, identical at every sampling rate >= 8 kHz: (samples,) or (samples, C)."""
    t = np.arange(round(seconds * sampling_rate)) / sampling_rate
    mono = (
        0.2 * np.sin(2 * np.pi * 300 * t)
        + 0.1 * np.sin(2 * np.pi * 1100 * t)
        + 0.05 * np.sin(2 * np.pi * 2500 * t)
    )
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def test_audio_is_resampled(tmp_path: Path) -> None:
    sf.write(tmp_path / "a16.wav", tones(16000), 16000)
    sf.write(tmp_path / "a8.wav", tones(8000), 8000)
    sf.write(tmp_path / "a44.flac", tones(44100), 44100)
    reference = audio_utterance(tmp_path / "a16.wav", 16000).features
    for name in ("a8.wav", "a44.flac"):
        feats = audio_utterance(tmp_path / name, 16000).features
        assert feats.shape == reference.shape  # computed at 16 kHz: 100 frames a second
        low = slice(0, 50)  # mel bins below 4 kHz, where both signals are the same
        assert np.abs(feats[:, low] - reference[:, low]).mean() < 0.1


def test_multichannel_refused(tiny, exported_dir: Path, tmp_path: Path, capsys) -> None:
    sf.write(tmp_path / "mono.wav", tones(8000), 8000)
    sf.write(tmp_path / "stereo.wav", tones(16000, channels=2), 16000)
    args = ["--model-dir", str(exported_dir), "--bpe-model", str(tiny.bpe_model)]
    got = infer(capsys, *args, str(tmp_path / "mono.wav"))
    assert list(got) == [str(tmp_path / "mono.wav")]
    with pytest.raises(ValueError, match=rf"{tmp_path / 'stereo.wav'} has 2 channels"):
        infer_cli.main([*args, str(tmp_path / "stereo.wav")])
    stereo_cut = Recording.from_file(tmp_path / "stereo.wav").to_cut()
    with pytest.raises(ValueError, match=r"cut stereo in cuts\.jsonl has 2 channels"):
        cut_utterance(stereo_cut, 16000, "cuts.jsonl")


def test_cuts_without_features(tiny) -> None:
    """Cuts with audio only get the training features, computed here (equal up to the stored features'
    lilcom compression)."""
    stored = {c.supervisions[0].id: c for c in CutSet.from_file(tiny.valid_cuts)}
    audio_only = cuts_from_manifests(Path(tiny.valid_cuts).parents[1] / "manifests", "tiny", "dev")
    assert len(audio_only) == len(stored) and not any(c.has_features for c in audio_only)
    for cut in audio_only:
        utt = cut_utterance(cut, 16000, "dev")
        reference = stored[cut.supervisions[0].id]
        assert utt.text == reference.supervisions[0].text
        np.testing.assert_allclose(utt.features, reference.load_features(), atol=0.05)
