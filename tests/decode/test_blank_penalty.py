"""The blank penalty of every search: subtracting p from the joiner's blank logit before the log-softmax is
the plain search of a model whose blank output bias is p lower, which the references here decode."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from kd.bin.decode import method_tag
from kd.decode import decode_batch, greedy_search_batch, modified_beam_search, streaming_greedy_search

from .fake_model import FakeLM, make_model
from .reference import exact_sequence_scores
from .test_search import peaked_encoder_out, random_encoder_out

BLANK = 0


def lowered_blank(model: torch.nn.Module, penalty: float) -> torch.nn.Module:
    """A copy of ``model`` whose joiner gives blank a logit ``penalty`` lower."""
    lowered = copy.deepcopy(model)
    with torch.no_grad():
        lowered.joiner.output_linear.bias[BLANK] -= penalty
    return lowered


@torch.no_grad()
def reference_greedy(model, encoder_out: torch.Tensor, max_sym_per_frame: int, penalty: float):
    """Greedy search of one utterance (T, D_enc) with the penalty, in float64: (tokens, timestamps, score)."""
    decoder_out, state = model.decoder.step(torch.tensor([BLANK]), model.decoder.init_state(1, "cpu"))
    tokens, timestamps, score = [], [], 0.0
    for t in range(encoder_out.size(0)):
        for _ in range(max_sym_per_frame):
            logits = model.joiner(encoder_out[t], decoder_out[0]).double()
            logits[BLANK] -= penalty
            log_probs = logits.log_softmax(dim=-1)
            best = int(log_probs.argmax())
            score += float(log_probs[best])
            if best == BLANK:
                break
            tokens.append(best)
            timestamps.append(t)
            decoder_out, state = model.decoder.step(torch.tensor([best]), state)
    return tokens, timestamps, score


def _features(seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 41, 80, generator=g), torch.tensor([41, 19, 30])


def test_zero_penalty_is_the_plain_search() -> None:
    model = make_model(decoder="stateless")
    encoder_out, lens = random_encoder_out([9, 4, 0, 7])
    out = dict(return_timestamps=True, return_scores=True)
    plain = greedy_search_batch(model, encoder_out, lens, 2, **out)
    assert greedy_search_batch(model, encoder_out, lens, 2, blank_penalty=0.0, **out) == plain
    for lm in (None, FakeLM.biased(model.vocab_size, favoured=2)):
        kwargs = dict(beam=3, lm=lm, lm_scale=0.5, **out)
        plain = modified_beam_search(model, encoder_out, lens, **kwargs)
        assert modified_beam_search(model, encoder_out, lens, blank_penalty=0.0, **kwargs) == plain
    features, feature_lens = _features()
    plain = streaming_greedy_search(model, features, feature_lens, 2, 2, **out)
    assert streaming_greedy_search(model, features, feature_lens, 2, 2, blank_penalty=0.0, **out) == plain


@pytest.mark.parametrize("decoder, penalty", [("lstm", 1.5), ("stateless", -1.0)])
def test_greedy_with_penalty_matches_reference(decoder: str, penalty: float) -> None:
    model = make_model(decoder=decoder)
    encoder_out, lens = random_encoder_out([9, 4, 0, 7])
    res = greedy_search_batch(
        model, encoder_out, lens, 2, blank_penalty=penalty, return_timestamps=True, return_scores=True
    )
    changed = False
    for b, n in enumerate(lens.tolist()):
        tokens, timestamps, score = reference_greedy(model, encoder_out[b, :n], 2, penalty)
        assert res.hyps[b] == tokens
        assert res.timestamps[b] == timestamps
        assert res.scores[b] == pytest.approx(score, abs=1e-4)
        changed |= tokens != reference_greedy(model, encoder_out[b, :n], 2, 0.0)[0]
    assert changed  # the penalty moved some hypothesis, so the comparison above is not the plain search's


@pytest.mark.parametrize("decoder, use_lm", [("lstm", False), ("stateless", True)])
def test_beam_with_penalty_is_the_beam_of_the_lowered_blank(decoder: str, use_lm: bool) -> None:
    model = make_model(vocab_size=6, decoder=decoder)
    lm = FakeLM.biased(6, favoured=4) if use_lm else None
    encoder_out, lens = random_encoder_out([10, 6, 10], seed=7)
    kwargs = dict(beam=4, lm=lm, lm_scale=1.0, return_timestamps=True, return_scores=True)
    penalised = modified_beam_search(model, encoder_out, lens, blank_penalty=2.0, **kwargs)
    lowered = modified_beam_search(lowered_blank(model, 2.0), encoder_out, lens, **kwargs)
    assert penalised.hyps == lowered.hyps
    assert penalised.timestamps == lowered.timestamps
    assert penalised.scores == pytest.approx(lowered.scores, abs=1e-4)
    assert penalised.hyps != modified_beam_search(model, encoder_out, lens, beam=4, lm=lm, lm_scale=1.0)


def test_exhaustive_beam_with_penalty_is_exact() -> None:
    """A beam that keeps every candidate returns the sequence of the largest exact fused score of the
    penalised distribution (summed over its alignments with at most one symbol per frame)."""
    model = make_model(vocab_size=3)
    lm = FakeLM.biased(3, favoured=1)
    encoder_out, lens = random_encoder_out([4], seed=3)
    exact = exact_sequence_scores(lowered_blank(model, 1.2), encoder_out[0], lm, 0.7)
    best = max(exact, key=exact.get)
    wide = modified_beam_search(
        model, encoder_out, lens, beam=256, lm=lm, lm_scale=0.7, blank_penalty=1.2, return_scores=True
    )
    assert tuple(wide.hyps[0]) == best
    assert wide.scores[0] == pytest.approx(exact[best], abs=1e-4)


def test_a_large_penalty_removes_blanks() -> None:
    """Blank costs more and more: hypotheses grow, and with an overwhelming penalty every frame emits."""
    model = make_model(vocab_size=6, decoder="stateless")
    lens = [12, 7, 12]
    encoder_out, lens_t = random_encoder_out(lens, seed=7)
    features, feature_lens = _features()
    frames = model.encoder.output_lengths(feature_lens).tolist()

    def lengths(penalty: float) -> dict[str, list[int]]:
        searched = {
            "greedy": greedy_search_batch(model, encoder_out, lens_t, blank_penalty=penalty),
            "beam": modified_beam_search(model, encoder_out, lens_t, beam=4, blank_penalty=penalty),
            "streaming": streaming_greedy_search(model, features, feature_lens, 2, blank_penalty=penalty),
        }
        return {k: [len(h) for h in hyps] for k, hyps in searched.items()}

    plain, more, every = lengths(0.0), lengths(3.0), lengths(1e4)
    for method in plain:
        assert sum(more[method]) > sum(plain[method]), method
    # one symbol per frame at most (max_sym_per_frame 1, modified beam search): a token on every frame
    assert every == {"greedy": lens, "beam": lens, "streaming": frames}
    assert sum(plain["greedy"]) < sum(lens)  # the plain search does emit blanks


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
def test_beam_one_is_greedy_with_the_same_penalty(decoder: str) -> None:
    model = make_model(decoder=decoder)
    encoder_out, lens = random_encoder_out([12, 5, 9])
    out = dict(blank_penalty=1.0, return_timestamps=True, return_scores=True)
    greedy = greedy_search_batch(model, encoder_out, lens, **out)
    beam = modified_beam_search(model, encoder_out, lens, beam=1, **out)
    assert beam.hyps == greedy.hyps
    assert beam.timestamps == greedy.timestamps
    assert beam.scores == pytest.approx(greedy.scores, abs=1e-4)


def test_peaked_model_greedy_equals_beam_with_the_same_penalty() -> None:
    """test_search's peaked model, on whose frames greedy and beam search agree: a penalty past the blank
    frames' margin turns some of them into symbols, yet the premise (the greedy alignment holds more than
    half of the penalised probability) still holds, so beam search still returns the greedy sequence."""
    model = make_model(vocab_size=8, peak=8.0, decoder="stateless")
    encoder_out, lens = peaked_encoder_out(model, [30, 22, 14])
    greedy = greedy_search_batch(model, encoder_out, lens, blank_penalty=16.0, return_scores=True)
    assert min(greedy.scores) > math.log(0.5)  # the premise, checked
    plain = greedy_search_batch(model, encoder_out, lens)
    assert sum(map(len, greedy.hyps)) > sum(map(len, plain))  # the penalty turned blanks into symbols
    assert modified_beam_search(model, encoder_out, lens, beam=4) == plain
    assert modified_beam_search(model, encoder_out, lens, beam=4, blank_penalty=16.0) == greedy.hyps


@pytest.mark.parametrize("decoder", ["lstm", "stateless"])
def test_streaming_with_penalty_equals_full(decoder: str) -> None:
    model = make_model(decoder=decoder)
    features, feature_lens = _features()
    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encoder(features, feature_lens)
    out = dict(blank_penalty=2.0, return_timestamps=True, return_scores=True)
    full = greedy_search_batch(model, encoder_out, encoder_out_lens, 2, **out)
    streamed = streaming_greedy_search(model, features, feature_lens, 3, 2, **out)
    assert streamed.hyps == full.hyps
    assert streamed.timestamps == full.timestamps
    assert streamed.scores == pytest.approx(full.scores, abs=1e-4)


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search", "streaming_greedy_search"])
def test_decode_batch_passes_the_penalty(method: str) -> None:
    model = make_model(decoder="stateless")
    features, feature_lens = _features()
    penalised = decode_batch(model, features, feature_lens, method, beam=3, blank_penalty=2.0)
    lowered = decode_batch(lowered_blank(model, 2.0), features, feature_lens, method, beam=3)
    assert penalised == lowered
    assert penalised != decode_batch(model, features, feature_lens, method, beam=3)


def test_method_tag_names_the_penalty_only_when_there_is_one() -> None:
    assert method_tag("greedy_search", 4) == "greedy_search"
    assert method_tag("greedy_search", 4, None, 0.0) == "greedy_search"
    assert method_tag("greedy_search", 4, None, 1.5) == "greedy_search_bp_1.5"
    assert method_tag("streaming_greedy_search", 4, None, 2.0) == "streaming_greedy_search_bp_2"
    assert method_tag("modified_beam_search", 4, None, 0.0) == "modified_beam_search_beam_4"
    assert method_tag("modified_beam_search", 4, None, -0.5) == "modified_beam_search_beam_4_bp_-0.5"
    assert method_tag("modified_beam_search", 8, 0.3) == "modified_beam_search_beam_8_lm_0.3"
    assert method_tag("modified_beam_search", 8, 0.3, 1.0) == "modified_beam_search_beam_8_lm_0.3_bp_1"


def test_method_tag_names_max_sym_per_frame_when_not_one() -> None:
    assert method_tag("greedy_search", 4, max_sym_per_frame=1) == "greedy_search"
    assert method_tag("greedy_search", 4, None, 2.0, 3) == "greedy_search_max_sym_3_bp_2"
    tag = method_tag("streaming_greedy_search", 4, max_sym_per_frame=2)
    assert tag == "streaming_greedy_search_max_sym_2"
    assert method_tag("modified_beam_search", 4, max_sym_per_frame=1) == "modified_beam_search_beam_4"
    tag = method_tag("modified_beam_search", 4, 0.3, 2.0, 2)
    assert tag == "modified_beam_search_beam_4_max_sym_2_lm_0.3_bp_2"
