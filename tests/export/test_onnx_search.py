"""The numpy searches over the onnxruntime graphs give the PyTorch searches' hypotheses, whole-utterance and
streaming, and reject bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kd.decode import greedy_search_batch, modified_beam_search, streaming_greedy_search
from kd.export.inference import SearchOptions, batches, collate, decode_features
from kd.export.inputs import Utterance
from kd.export.onnx_export import export_onnx
from kd.export.onnx_model import OnnxTransducer
from kd.export.search import GreedySearch, ModifiedBeamSearch

from .tiny_models import make_model


def features(lens: list[int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lens), max(lens), 80, generator=g)
    for b, n in enumerate(lens):
        x[b, n:] = 0.0
    return x, torch.tensor(lens)


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory: pytest.TempPathFactory):
    """(PyTorch model, onnxruntime model) per (decoder type, causal)."""
    models = {}
    for decoder, causal in (("stateless", False), ("lstm", False), ("stateless", True), ("lstm", True)):
        model = make_model(decoder=decoder, causal=causal)
        out = tmp_path_factory.mktemp(f"{decoder}-{causal}")
        export_onnx(model, tiny.bpe_model, out)
        models[decoder, causal] = model, OnnxTransducer(out)
    return models


LENS = [95, 62, 30, 7]


@pytest.mark.parametrize("decoder", ["stateless", "lstm"])
@pytest.mark.parametrize("causal", [False, True])
def test_searches_match_pytorch(exported, decoder: str, causal: bool) -> None:
    model, onnx_model = exported[decoder, causal]
    x, x_lens = features(LENS)
    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encoder(x, x_lens)
    cases = [
        (SearchOptions("greedy_search"), greedy_search_batch(model, encoder_out, encoder_out_lens)),
        (
            SearchOptions("greedy_search", max_sym_per_frame=3),
            greedy_search_batch(model, encoder_out, encoder_out_lens, max_sym_per_frame=3),
        ),
        (
            SearchOptions("modified_beam_search", beam=4),
            modified_beam_search(model, encoder_out, encoder_out_lens, beam=4),
        ),
        (
            SearchOptions("modified_beam_search", beam=4, max_sym_per_frame=2),
            modified_beam_search(model, encoder_out, encoder_out_lens, beam=4, max_sym_per_frame=2),
        ),
        (  # a narrow beam with 3 per frame prunes every frontier on some frames
            SearchOptions("modified_beam_search", beam=2, max_sym_per_frame=3),
            modified_beam_search(model, encoder_out, encoder_out_lens, beam=2, max_sym_per_frame=3),
        ),
    ]
    emitted = 0
    for options, expected in cases:
        assert decode_features(onnx_model, x.numpy(), x_lens.numpy(), options) == expected
        emitted += sum(map(len, expected))
    assert emitted > 0
    if decoder == "stateless":
        # tokens on some frames, blanks on others: the comparison exercises both paths
        assert 0 < len(cases[0][1][0]) < int(encoder_out_lens[0])
        assert cases[2][1] != cases[0][1]  # the beam finds other hypotheses than greedy search
        assert cases[3][1] != cases[2][1]  # and others again with two symbols per frame


@pytest.mark.parametrize("decoder", ["stateless", "lstm"])
def test_streaming_matches_pytorch(exported, decoder: str) -> None:
    """Chunk by chunk through the streaming graph: greedy search equals PyTorch's streaming greedy search,
    beam search equals PyTorch's beam search over the whole (chunk-masked) encoder output."""
    model, onnx_model = exported[decoder, True]
    x, x_lens = features(LENS)
    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encoder(x, x_lens)
        greedy = streaming_greedy_search(model, x, x_lens)
        beam = modified_beam_search(model, encoder_out, encoder_out_lens, beam=4)
    assert sum(map(len, greedy)) > 0
    for options, expected in (
        (SearchOptions("greedy_search", streaming=True), greedy),
        (SearchOptions("modified_beam_search", streaming=True), beam),
    ):
        assert decode_features(onnx_model, x.numpy(), x_lens.numpy(), options) == expected


def test_cascaded_passes_match_pytorch(tiny, tmp_path: Path) -> None:
    """Without --streaming the second (final) pass is decoded, with it the streaming first pass."""
    model = make_model(cascaded=True)
    export_onnx(model, tiny.bpe_model, tmp_path)
    onnx_model = OnnxTransducer(tmp_path)
    x, x_lens = features(LENS)
    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encoder(x, x_lens)
        second = greedy_search_batch(model, encoder_out, encoder_out_lens)
        first = streaming_greedy_search(model.first_pass, x, x_lens)
    assert first != second
    assert decode_features(onnx_model, x.numpy(), x_lens.numpy(), SearchOptions()) == second
    assert decode_features(onnx_model, x.numpy(), x_lens.numpy(), SearchOptions(streaming=True)) == first


def test_search_is_chunk_invariant(exported) -> None:
    """Advancing frame pieces one at a time gives the result of one advance over all frames."""
    _, onnx_model = exported["stateless", False]
    x, x_lens = features(LENS[:3])
    out, lens = onnx_model.encode(x.numpy(), x_lens.numpy())
    for search_type in (GreedySearch, ModifiedBeamSearch):
        whole = search_type(onnx_model, 3, max_sym_per_frame=2)
        pieces = search_type(onnx_model, 3, max_sym_per_frame=2)
        whole.advance(out, lens)
        for start in range(0, out.shape[1], 5):
            pieces.advance(out[:, start : start + 5], np.clip(lens - start, 0, 5))
        assert pieces.results() == whole.results()


def test_bad_input(exported, tmp_path: Path) -> None:
    _, onnx_model = exported["stateless", False]
    with pytest.raises(ValueError, match="max_sym_per_frame"):
        GreedySearch(onnx_model, 2, max_sym_per_frame=0)
    with pytest.raises(ValueError, match="beam must be >= 1"):
        ModifiedBeamSearch(onnx_model, 2, beam=0)
    with pytest.raises(ValueError, match="max_sym_per_frame"):
        ModifiedBeamSearch(onnx_model, 2, max_sym_per_frame=0)
    with pytest.raises(ValueError, match="unknown decoding method 'viterbi'"):
        SearchOptions("viterbi")
    with pytest.raises(ValueError, match="exceeds"):
        GreedySearch(onnx_model, 1).advance(np.zeros((1, 3, 24), np.float32), np.array([4]))
    x, x_lens = features([40])
    with pytest.raises(ValueError, match="so it cannot stream"):
        decode_features(onnx_model, x.numpy(), x_lens.numpy(), SearchOptions(streaming=True))
    with pytest.raises(ValueError, match="short: 6 feature frames, fewer than the 7"):
        collate([Utterance("short", np.zeros((6, 80), np.float32), None)], 80, 7)
    with pytest.raises(ValueError, match=r"wide: features of shape \(20, 40\).*\(T, 80\)"):
        collate([Utterance("wide", np.zeros((20, 40), np.float32), None)], 80, 7)


def test_batches_respect_max_frames() -> None:
    utts = [
        Utterance(str(i), np.zeros((n, 80), np.float32), None) for i, n in enumerate([50, 40, 30, 90, 10])
    ]
    groups = [[u.id for u in batch] for batch in batches(utts, max_frames=100)]
    assert groups == [["0", "1"], ["2"], ["3", "4"]]
    features_, lens = collate(utts[:2], 80, 7)
    assert features_.shape == (2, 50, 80) and lens.tolist() == [50, 40]


def test_search_tags_match_kd_bin_decode() -> None:
    from kd.bin.decode import method_tag

    assert SearchOptions("greedy_search").tag == method_tag("greedy_search", 4)
    two = SearchOptions("greedy_search", max_sym_per_frame=2)
    assert two.tag == method_tag("greedy_search", 4, None, 0.0, 2) == "greedy_search_max_sym_2"
    streaming = SearchOptions("greedy_search", streaming=True, max_sym_per_frame=2)
    assert streaming.tag == method_tag("streaming_greedy_search", 4, None, 0.0, 2)
    assert SearchOptions("modified_beam_search", beam=8).tag == method_tag("modified_beam_search", 8)
    beam_two = SearchOptions("modified_beam_search", max_sym_per_frame=2)
    assert beam_two.tag == method_tag("modified_beam_search", 4, None, 0.0, 2)
