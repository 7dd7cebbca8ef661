"""Latency of streaming and cascaded models: the algorithmic parts, the measured compute, the aggregation, the
decoding command line (results unchanged, latency stored and logged) and the latency columns of the tables."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet, Features, MonoCut, SupervisionSegment
from lhotse.features.io import NumpyFilesWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from tiny_transducer import TINY_MODEL  # noqa: E402

from kd.config import from_dict, save_yaml  # noqa: E402
from kd.data.tokenizer import Tokenizer, train_bpe
from kd.decode import greedy_search_batch, streaming_greedy_search
from kd.decode.latency import (
    UtteranceTiming,
    latency_stats,
    measure_latency,
    streaming_part,
    time_utterance,
)
from kd.decode.report import collect_results, markdown_table
from kd.decode.tables import TableSpec, render_table
from kd.models import build_model
from kd.models.config import ModelConfig
from kd.train.checkpoint import save_checkpoint
from kd.train.config import TrainConfig

CHUNK = 4  # encoder frames per chunk
FRAMES = [150, 97, 60, 5]  # feature frames per cut; the last gives no encoder frame
WORDS = ["AB", "CA", "BC"]
ENCODER = TINY_MODEL["encoder"]
SECOND_PASS = {k: v for k, v in ENCODER.items() if k != "subsampling_channels"}
MODELS = {
    "teacher": {"encoder": ENCODER},
    "student_streaming": {"encoder": {**ENCODER, "causal": True, "chunk_size": CHUNK}},
    "student_cascaded": {
        "encoder": {**ENCODER, "causal": True, "chunk_size": CHUNK},
        "second_pass": SECOND_PASS,
    },
}
VOCAB = 7


def encoder_frames(num_frames: int) -> int:
    """Conv2dSubsampling: two 3x3 convolutions of stride 2 without padding."""
    return max(((num_frames - 1) // 2 - 1) // 2, 0)


def make_model(name: str, vocab_size: int = VOCAB, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = from_dict(
        ModelConfig, {**MODELS[name], "decoder": {"type": "stateless", "dim": 16}, "joiner_dim": 16}
    )
    model = build_model(config, vocab_size).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] = -2.0  # fewer blanks, so the hypotheses are not empty
    return model


@pytest.fixture(scope="module")
def cuts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cuts of random 80-dim features with FRAMES frames, stored as numpy files."""
    root = tmp_path_factory.mktemp("latency_cuts")
    rng = np.random.default_rng(0)
    cuts = []
    with NumpyFilesWriter(root / "feats") as writer:
        for i, n in enumerate(FRAMES):
            cut_id = f"cut-{i}"
            key = writer.write(cut_id, rng.standard_normal((n, 80)).astype(np.float32))
            features = Features(
                type="fbank",
                num_frames=n,
                num_features=80,
                frame_shift=0.01,
                sampling_rate=16000,
                start=0.0,
                duration=n / 100,
                storage_type=writer.name,
                storage_path=str(root / "feats"),
                storage_key=key,
                recording_id=cut_id,
                channels=0,
            )
            text = " ".join(WORDS[: 1 + i % 3])
            supervision = SupervisionSegment(cut_id, cut_id, 0.0, n / 100, text=text)
            cuts.append(MonoCut(cut_id, 0.0, n / 100, 0, features=features, supervisions=[supervision]))
    path = root / "tiny_cuts_test.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)


def test_streaming_model_latency(cuts_file: Path) -> None:
    model = make_model("student_streaming")
    stats = measure_latency(model, CutSet.from_file(cuts_file), max_utts=10)
    assert stats.chunk_ms == CHUNK * 4 * 10.0  # 4 encoder frames of 4 feature frames of 10 ms
    # The subsampling reads 7 feature frames per encoder frame with a hop of 4: 3 frames past a chunk.
    assert stats.lookahead_ms == 30.0
    assert stats.num_utts == 3  # the 5-frame cut gives no encoder frame and is skipped
    assert stats.num_chunks == sum(math.ceil(encoder_frames(n) / CHUNK) for n in FRAMES)
    assert stats.compute_ms_mean > 0 and stats.compute_ms_p90 > 0
    assert stats.first_pass_latency_ms == pytest.approx(CHUNK * 40 / 2 + 30.0 + stats.compute_ms_mean)
    assert stats.final_latency_ms is None
    few = measure_latency(model, CutSet.from_file(cuts_file), max_utts=2, chunk_size=2)
    assert (few.num_utts, few.chunk_ms) == (2, 80.0)
    assert few.num_chunks == sum(math.ceil(encoder_frames(n) / 2) for n in FRAMES[:2])
    assert "first-pass latency" in stats.summary() and "final latency" not in stats.summary()


def test_timed_utterances_decode_as_the_searches_do() -> None:
    x, x_lens = torch.randn(1, 130, 80), torch.tensor([130])
    model = make_model("student_streaming")
    timing = time_utterance(model, x, x_lens)
    assert len(timing.chunk_seconds) == math.ceil(encoder_frames(130) / CHUNK)
    assert all(s > 0 for s in timing.chunk_seconds) and timing.second_pass_seconds is None
    assert timing.hyp == streaming_greedy_search(model, x, x_lens)[0] and timing.hyp

    cascaded = make_model("student_cascaded")
    timing = time_utterance(cascaded, x, x_lens, max_sym_per_frame=2)
    with torch.no_grad():
        first_out, second_out, lens = cascaded.encoder.forward_both(x, x_lens)
    assert timing.hyp == greedy_search_batch(cascaded, first_out, lens, max_sym_per_frame=2)[0]
    assert timing.final_hyp == greedy_search_batch(cascaded, second_out, lens, max_sym_per_frame=2)[0]
    assert timing.final_hyp and timing.second_pass_seconds > 0
    with pytest.raises(ValueError, match=r"one utterance"):
        time_utterance(model, x.expand(2, -1, -1), torch.tensor([130, 130]))
    with pytest.raises(ValueError, match="no encoder frame"):
        time_utterance(model, x[:, :5], torch.tensor([5]))


def test_cascaded_model_gets_a_final_latency(cuts_file: Path) -> None:
    model = make_model("student_cascaded")
    assert streaming_part(model).encoder is model.encoder.first_pass
    stats = measure_latency(model, CutSet.from_file(cuts_file), max_utts=2)
    assert (stats.chunk_ms, stats.lookahead_ms, stats.num_utts) == (CHUNK * 40.0, 30.0, 2)
    assert stats.final_latency_ms > 0 and "final latency" in stats.summary()
    # Its first pass alone streams as a one-pass model: no second pass to wait for.
    assert measure_latency(model.first_pass, CutSet.from_file(cuts_file), max_utts=1).final_latency_ms is None


def test_a_non_causal_model_is_refused(cuts_file: Path) -> None:
    model = make_model("teacher")
    assert streaming_part(model) is None
    with pytest.raises(ValueError, match="must be causal"):
        measure_latency(model, CutSet.from_file(cuts_file))
    with pytest.raises(ValueError, match="max_utts must be >= 1"):
        measure_latency(make_model("student_streaming"), CutSet.from_file(cuts_file), max_utts=0)


def test_latency_stats_aggregation() -> None:
    timings = [
        UtteranceTiming([0.010, 0.030, 0.020], [1], 0.050, [1]),
        UtteranceTiming([0.040, 0.005], [2], 0.070, [2]),
    ]
    stats = latency_stats(timings, chunk_ms=320.0, lookahead_ms=30.0)
    ms = sorted([10.0, 30.0, 20.0, 40.0, 5.0])
    position = 0.9 * (len(ms) - 1)  # linear interpolation between closest ranks
    low = int(position)
    p90 = ms[low] + (ms[low + 1] - ms[low]) * (position - low)
    assert (stats.num_utts, stats.num_chunks) == (2, 5)
    assert stats.compute_ms_mean == pytest.approx(sum(ms) / 5)
    assert stats.compute_ms_p90 == pytest.approx(p90)
    assert stats.first_pass_latency_ms == pytest.approx(160.0 + 30.0 + 21.0)
    assert stats.final_latency_ms == pytest.approx(((20.0 + 50.0) + (5.0 + 70.0)) / 2)
    assert latency_stats(timings[:1], 320.0, 30.0).final_latency_ms == pytest.approx(70.0)
    with pytest.raises(ValueError, match="every utterance has a second pass"):
        latency_stats([timings[0], UtteranceTiming([0.01], [1])], 320.0, 30.0)
    with pytest.raises(ValueError, match="at least one utterance"):
        latency_stats([], 320.0, 30.0)


def save_experiment(exp_dir: Path, name: str, bpe_model: Path) -> None:
    """A randomly initialised model as the trainer saves a finished epoch 1."""
    config = from_dict(TrainConfig, {"model": MODELS[name], "paths": {"bpe_model": str(bpe_model)}})
    torch.manual_seed(0)
    model = build_model(config.model, Tokenizer(bpe_model).vocab_size)
    with torch.no_grad():
        model.joiner.output_linear.bias[0] = -2.0
    save_yaml(config, exp_dir / "config.yaml")
    save_checkpoint(exp_dir / "epoch-1.pt", {"model": model.state_dict(), "global_step": 1})


def run_decode(monkeypatch: pytest.MonkeyPatch, exp_dir: Path, cuts_file: Path, *options: str) -> None:
    from kd.bin import decode

    argv = ["decode", "--exp-dir", str(exp_dir), "--cuts", str(cuts_file), "--device", "cpu", *options]
    monkeypatch.setattr(sys, "argv", argv)
    decode.main()


def test_decode_stores_latency_and_tables_show_it(cuts_file: Path, tmp_path: Path, monkeypatch) -> None:
    texts = [" ".join(WORDS)] * 3 + WORDS
    bpe_model = train_bpe(texts, vocab_size=VOCAB, output_dir=tmp_path / "lang")
    exp = tmp_path / "exp"
    for name in MODELS:
        save_experiment(exp / name, name, bpe_model)
        run_decode(monkeypatch, exp / name, cuts_file, "--latency-utts", "2")

    records = {n: json.loads((exp / n / "wer-test-greedy_search.json").read_text()) for n in MODELS}
    assert records["teacher"]["latency"] is None  # not causal: decoded, not measured
    log = "".join(p.read_text() for p in (exp / "teacher" / "log").glob("decode-*.log"))
    assert "latency not measured: the model does not stream" in log
    streaming = records["student_streaming"]["latency"]
    assert (streaming["chunk_ms"], streaming["lookahead_ms"], streaming["num_utts"]) == (160.0, 30.0, 2)
    assert streaming["final_latency_ms"] is None
    assert records["student_cascaded"]["latency"]["final_latency_ms"] > 0
    log = "".join(p.read_text() for p in (exp / "student_cascaded" / "log").glob("decode-*.log"))
    assert "test latency: chunk 160 ms + lookahead 30 ms" in log and "final latency" in log

    # Measuring changes no result: the same recognitions as a run without it.
    recogs = (exp / "student_streaming" / "recogs-test-greedy_search.txt").read_text()
    run_decode(monkeypatch, exp / "student_streaming", cuts_file, "--latency-utts", "0")
    assert (exp / "student_streaming" / "recogs-test-greedy_search.txt").read_text() == recogs
    assert (
        json.loads((exp / "student_streaming" / "wer-test-greedy_search.json").read_text())["latency"] is None
    )
    run_decode(monkeypatch, exp / "student_streaming", cuts_file, "--latency-utts", "2")
    streaming = json.loads((exp / "student_streaming" / "wer-test-greedy_search.json").read_text())["latency"]

    table = markdown_table(collect_results([exp])).splitlines()
    assert table[0].endswith("| RTF | latency (ms) | final latency (ms) |")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table[2:]}
    assert rows["exp/student_streaming"][-2:] == [f"{streaming['first_pass_latency_ms']:.1f}", "- |"]
    assert rows["exp/teacher"][-2:] == ["-", "- |"]
    cascaded = records["student_cascaded"]["latency"]
    assert rows["exp/student_cascaded"][-1] == f"{cascaded['final_latency_ms']:.1f} |"

    spec = TableSpec("e", "cascaded", ["teacher", "streaming", "cascaded"])
    lines = render_table(spec, exp, seeds=None).splitlines()
    assert "| params | latency (ms) | final latency (ms) | train time (min) | runs |" in lines[2]
    cells = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines[4:] if line.startswith("|")
    }
    assert cells["teacher"][3:5] == ["-", "-"]
    assert cells["streaming"][3:5] == [f"{streaming['first_pass_latency_ms']:.2f}", "-"]
    assert cells["cascaded"][3:5] == [
        f"{cascaded['first_pass_latency_ms']:.2f}",
        f"{cascaded['final_latency_ms']:.2f}",
    ]
