"""Greedy search, modified beam search and streaming greedy search on a tiny fake transducer."""

from __future__ import annotations

import math

import pytest
import torch

import kd.decode.beam_search as beam_search
from kd.decode import greedy_search_batch, modified_beam_search, streaming_greedy_search
from kd.decode.states import StateBatcher

from .fake_model import FakeLM, make_model
from .reference import exact_sequence_scores, reference_greedy


def random_encoder_out(lens: list[int], dim: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, dim) with large garbage past each length, so a search that reads padding goes wrong."""
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(len(lens), max(lens), dim, generator=g)
    for b, n in enumerate(lens):
        out[b, n:] = 50.0
    return out, torch.tensor(lens)


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
@pytest.mark.parametrize("max_sym", [1, 3])
def test_greedy_matches_reference(decoder: str, max_sym: int) -> None:
    model = make_model(decoder=decoder)
    encoder_out, lens = random_encoder_out([9, 4, 0, 7])
    res = greedy_search_batch(model, encoder_out, lens, max_sym, return_timestamps=True, return_scores=True)
    multi = False
    for b, n in enumerate(lens.tolist()):
        tokens, timestamps, score = reference_greedy(model, encoder_out[b, :n], max_sym)
        assert res.hyps[b] == tokens
        assert res.timestamps[b] == timestamps
        assert res.scores[b] == pytest.approx(score, abs=1e-4)
        multi |= len(set(timestamps)) < len(timestamps)
    # the random model emits several symbols on some frame: the max_sym > 1 path is exercised
    assert multi == (max_sym > 1)


def test_greedy_plain_output_and_bad_input() -> None:
    model = make_model()
    encoder_out, lens = random_encoder_out([5, 3])
    hyps = greedy_search_batch(model, encoder_out, lens)
    assert isinstance(hyps, list) and all(isinstance(h, list) for h in hyps)
    with pytest.raises(ValueError, match="exceeds"):
        greedy_search_batch(model, encoder_out, torch.tensor([6, 3]))
    with pytest.raises(ValueError, match="max_sym_per_frame"):
        greedy_search_batch(model, encoder_out, lens, max_sym_per_frame=0)


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
@pytest.mark.parametrize("use_lm", [False, True])
@pytest.mark.parametrize("max_sym", [1, 2])
def test_beam_batch_equals_each_alone(decoder: str, use_lm: bool, max_sym: int) -> None:
    model = make_model(decoder=decoder)
    lm = FakeLM.biased(model.vocab_size, favoured=2) if use_lm else None
    lens = [10, 3, 7, 0, 10]
    encoder_out, lens_t = random_encoder_out(lens)
    kwargs = dict(
        beam=4, lm=lm, lm_scale=0.5, max_sym_per_frame=max_sym, return_timestamps=True, return_scores=True
    )
    batch = modified_beam_search(model, encoder_out, lens_t, **kwargs)
    for b, n in enumerate(lens):
        alone = modified_beam_search(model, encoder_out[b : b + 1, :n], torch.tensor([n]), **kwargs)
        assert batch.hyps[b] == alone.hyps[0]
        assert batch.timestamps[b] == alone.timestamps[0]
        assert batch.scores[b] == pytest.approx(alone.scores[0], abs=1e-4)
    assert batch.hyps[3] == [] and batch.scores[3] == 0.0


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
@pytest.mark.parametrize("max_sym", [1, 2, 3])
def test_beam_one_is_greedy(decoder: str, max_sym: int) -> None:
    model = make_model(decoder=decoder)
    encoder_out, lens = random_encoder_out([12, 5, 9])
    kwargs = dict(return_timestamps=True, return_scores=True)
    greedy = greedy_search_batch(model, encoder_out, lens, max_sym, **kwargs)
    beam = modified_beam_search(model, encoder_out, lens, beam=1, max_sym_per_frame=max_sym, **kwargs)
    # the random model emits several symbols on some frame when allowed: that path is exercised
    assert any(len(set(t)) < len(t) for t in greedy.timestamps) == (max_sym > 1)
    assert beam.hyps == greedy.hyps
    assert beam.timestamps == greedy.timestamps
    assert beam.scores == pytest.approx(greedy.scores, abs=1e-4)


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
def test_beam_survives_pruning_every_frontier(decoder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a narrow beam and 3 symbols per frame, the hypotheses still emitting can all fall below the
    finished ones on a frame; the frame then ends there (and the batch still equals each utterance)."""
    emptied, prune = [], beam_search._prune

    def counting_prune(frontier: list[list], done: list[dict], beam: int) -> None:
        had = any(frontier)
        prune(frontier, done, beam)
        emptied.append(had and not any(frontier))

    monkeypatch.setattr(beam_search, "_prune", counting_prune)
    model = make_model(decoder=decoder)
    lens = [12, 5, 9]
    encoder_out, lens_t = random_encoder_out(lens, seed=9)
    kwargs = dict(beam=2, max_sym_per_frame=3, return_timestamps=True, return_scores=True)
    batch = modified_beam_search(model, encoder_out, lens_t, **kwargs)
    assert any(emptied)
    for b, n in enumerate(lens):
        alone = modified_beam_search(model, encoder_out[b : b + 1, :n], torch.tensor([n]), **kwargs)
        assert batch.hyps[b] == alone.hyps[0] and batch.timestamps[b] == alone.timestamps[0]


@pytest.mark.parametrize("lm_scale", [0.0, 0.7])
@pytest.mark.parametrize("max_sym", [1, 2])
def test_exhaustive_beam_is_exact(lm_scale: float, max_sym: int) -> None:
    """With a beam wide enough to keep every candidate, modified beam search computes the exact log-prob
    (summed over alignments with at most ``max_sym`` symbols per frame) of every sequence and returns the
    best one. Its best score is then >= the greedy path's log-prob, and a narrow beam's score never exceeds
    the exact score of the sequence it returns (merging sums a subset of that sequence's alignments)."""
    model = make_model(vocab_size=3)
    lm = FakeLM.biased(3, favoured=1)
    encoder_out, lens = random_encoder_out([5 if max_sym == 1 else 4], seed=3)
    exact = exact_sequence_scores(model, encoder_out[0], lm, lm_scale, max_sym)
    best = max(exact, key=exact.get)
    kwargs = dict(lm=lm, lm_scale=lm_scale, max_sym_per_frame=max_sym, return_scores=True)

    # the top-k of a frame runs over hypotheses x vocabulary before equal sequences merge
    wide = modified_beam_search(model, encoder_out, lens, beam=3 * len(exact), **kwargs)
    assert tuple(wide.hyps[0]) == best
    assert wide.scores[0] == pytest.approx(exact[best], abs=1e-4)

    if lm_scale == 0.0:
        greedy = greedy_search_batch(model, encoder_out, lens, max_sym, return_scores=True)
        assert wide.scores[0] >= greedy.scores[0] - 1e-5
    for beam in (1, 2, 3):
        narrow = modified_beam_search(model, encoder_out, lens, beam=beam, **kwargs)
        assert narrow.scores[0] <= exact[tuple(narrow.hyps[0])] + 1e-5


def peaked_encoder_out(model, lens: list[int], margin: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder frames on which the joiner, ignoring the decoder, prefers one symbol by ``margin`` nats."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        pool = 3.0 * torch.randn(4000, model.encoder.output_dim, generator=g)
        log_probs = model.joiner.output_linear(torch.tanh(model.joiner.encoder_proj(pool))).log_softmax(-1)
    top2 = log_probs.topk(2, dim=-1).values
    pool = pool[top2[:, 0] - top2[:, 1] > margin]
    assert len(pool) >= sum(lens)
    frames = pool[torch.randperm(len(pool), generator=g)[: sum(lens)]].split(lens)
    return torch.nn.utils.rnn.pad_sequence(list(frames), batch_first=True), torch.tensor(lens)


def test_peaked_model_greedy_equals_beam() -> None:
    """When the greedy alignment holds more than half the probability of all alignments, its prefix leads
    every beam at every frame and its sequence is the most probable: beam search must return it."""
    model = make_model(vocab_size=8, peak=8.0, decoder="stateless")
    encoder_out, lens = peaked_encoder_out(model, [30, 22, 14])
    greedy = greedy_search_batch(model, encoder_out, lens, return_scores=True)
    assert min(greedy.scores) > math.log(0.5)  # the premise, checked
    assert sum(len(h) for h in greedy.hyps) > 10  # not trivially all blank
    assert modified_beam_search(model, encoder_out, lens, beam=4) == greedy.hyps


def test_lm_fusion_shifts_towards_the_lm() -> None:
    model = make_model(vocab_size=6)
    favoured = 4
    lm = FakeLM.biased(6, favoured=favoured)
    encoder_out, lens = random_encoder_out([20, 20, 20], seed=7)
    plain = modified_beam_search(model, encoder_out, lens, beam=4)
    assert modified_beam_search(model, encoder_out, lens, beam=4, lm=lm, lm_scale=0.0) == plain
    fused = modified_beam_search(model, encoder_out, lens, beam=4, lm=lm, lm_scale=2.0)

    def share(hyps: list[list[int]]) -> float:
        tokens = [t for h in hyps for t in h]
        return tokens.count(favoured) / max(len(tokens), 1)

    assert share(fused) > share(plain)


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_streaming_equals_full(decoder: str, chunk_size: int) -> None:
    model = make_model(decoder=decoder)
    g = torch.Generator().manual_seed(11)
    # lengths: shorter than one window, an exact number of chunks, and ragged tails
    feature_lens = torch.tensor([5, 4 * 3 * chunk_size + 3, 61, 38])
    features = torch.randn(4, 61, 80, generator=g)
    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encoder(features, feature_lens)
    full = greedy_search_batch(
        model, encoder_out, encoder_out_lens, 2, return_timestamps=True, return_scores=True
    )
    streamed = streaming_greedy_search(
        model, features, feature_lens, chunk_size, 2, return_timestamps=True, return_scores=True
    )
    assert sum(len(h) for h in full.hyps) > 0
    assert streamed.hyps == full.hyps
    assert streamed.timestamps == full.timestamps
    assert streamed.scores == pytest.approx(full.scores, abs=1e-4)


def test_streaming_needs_a_causal_encoder() -> None:
    model = make_model()
    model.encoder.causal = False
    with pytest.raises(ValueError, match="causal"):
        streaming_greedy_search(model, torch.zeros(1, 20, 80), torch.tensor([20]), 2)


def test_state_batcher_finds_batch_dims() -> None:
    decoder = make_model(decoder="lstm").decoder
    batcher = StateBatcher(decoder, "cpu")
    a, b = decoder.init_state(2, "cpu"), decoder.init_state(3, "cpu")
    a = (a[0] + 1.0, a[1] + 1.0)
    merged = batcher.merge(a, b, torch.tensor([4, 0, 2]))
    assert merged[0].shape == (1, 3, decoder.output_dim)
    assert merged[0][0, :, 0].tolist() == [0.0, 1.0, 0.0]

    class Broken:
        def init_state(self, batch_size: int, device: str) -> torch.Tensor:
            return torch.zeros(batch_size, batch_size)

    with pytest.raises(TypeError, match="batch dimension"):
        StateBatcher(Broken(), "cpu")
