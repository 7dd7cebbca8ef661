"""The teacher's targets of a batch against float64 references written here with explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kd.decode.beam_search import modified_beam_search
from kd.targets import compute
from kd.targets.compute import compute_targets, hypothesis_path, lattice_problem
from kd.targets.config import TargetConfig

BLANK = 0
K = 4
S = 3
FP16_RTOL = 2**-10  # fp16 keeps 11 significant bits: rounding moves a value by at most 2^-11 of it


def _inputs(frame_counts: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    lens = torch.tensor(frame_counts)
    return torch.randn(len(frame_counts), max(frame_counts), 80), lens


def _reference_lattice(model, x, x_lens, b: int, tokens: list[int]) -> torch.Tensor:
    """float64 log_softmax of the joiner at every node (t, u) of utterance b: (T, U+1, V)."""
    with torch.no_grad():
        enc, enc_lens = model.encoder(x[b : b + 1, : x_lens[b]], x_lens[b : b + 1])
        y = torch.tensor([[BLANK, *tokens]])
        dec = model.decoder(y, torch.tensor([len(tokens) + 1]))
        T, U = int(enc_lens[0]), len(tokens)
        out = torch.empty(T, U + 1, model.vocab_size, dtype=torch.float64)
        for t in range(T):
            for u in range(U + 1):
                out[t, u] = model.joiner(enc[0, t], dec[0, u]).double().log_softmax(-1)
    return out


def _check_topk(logprobs, ids, rest, reference_logp: torch.Tensor) -> None:
    """Stored top-k (logprobs (k,), ids (k,), rest ()) of one node against its float64 log-probs (V,)."""
    ids = torch.from_numpy(ids.astype(np.int64))
    assert len(set(ids.tolist())) == K
    top = reference_logp.sort(descending=True).values[:K]
    torch.testing.assert_close(torch.from_numpy(logprobs).double(), top, rtol=FP16_RTOL, atol=1e-6)
    torch.testing.assert_close(reference_logp[ids], top, rtol=1e-6, atol=1e-6)  # the k best classes
    others = reference_logp.clone()
    others[ids] = -math.inf
    expected_rest = max(torch.logsumexp(others, 0).item(), -23.0)
    assert float(rest) == pytest.approx(expected_rest, rel=FP16_RTOL, abs=1e-6)


def test_lattice_problem():
    assert "no encoder frame" in lattice_problem(0, 0, 5)
    assert lattice_problem(3, 12, 5) is None
    assert "13 tokens for 3 frames" in lattice_problem(3, 13, 5)
    assert lattice_problem(3, 3, 5, "modified") is None
    assert "one per frame" in lattice_problem(3, 4, 5, "modified")


def test_hypothesis_path_by_hand():
    assert hypothesis_path([0, 0, 2], 4).tolist() == [[0, 0], [0, 1], [0, 2], [1, 2], [2, 2], [2, 3], [3, 3]]
    assert hypothesis_path([], 2).tolist() == [[0, 0], [1, 0]]
    with pytest.raises(ValueError, match="non-decreasing"):
        hypothesis_path([2, 1], 3)
    with pytest.raises(ValueError, match="within"):
        hypothesis_path([3], 3)


@pytest.mark.parametrize(
    "tokens, rnnt_type", [([3, 5, 7, 2, 9, 4], "regular"), ([6], "regular"), ([3, 5, 7, 2, 9, 4], "modified")]
)
def test_pruned_targets_are_the_teachers_ranges_and_top_k(teacher_model, tokens, rnnt_type):
    x, x_lens = _inputs([70])
    config = TargetConfig(types=["pruned"], topk=K, prune_range=S, rnnt_type=rnnt_type)
    [got] = compute_targets(teacher_model, x, x_lens, [tokens], config)
    pruned = got.arrays["pruned"]
    ranges = torch.from_numpy(pruned["start"].astype(np.int64)).unsqueeze(1) + torch.arange(S)
    with torch.no_grad():
        out = teacher_model(x, x_lens, [tokens], S, am_scale=0.0, lm_scale=0.25, rnnt_type=rnnt_type)
    width = out.ranges.shape[2]  # the teacher narrows the window to U + 1 rows when U + 1 < S
    assert torch.equal(ranges[:, :width], out.ranges[0])
    U = len(tokens)
    reference = _reference_lattice(teacher_model, x, x_lens, 0, tokens)
    assert pruned["logprobs"].dtype == np.float16 and pruned["ids"].dtype == np.uint8
    for t in range(got.frames):
        for s in range(S):
            u = int(ranges[t, s])
            if u > U:  # a row past the transcript: no node, zeros
                assert not pruned["logprobs"][t, s].any() and not pruned["ids"][t, s].any()
                continue
            _check_topk(pruned["logprobs"][t, s], pruned["ids"][t, s], pruned["rest"][t, s], reference[t, u])


@pytest.mark.parametrize("logits_per_chunk", [None, 100])  # 100: one frame of the lattice at a time
def test_pxpy_are_the_full_lattice_log_probs(teacher_model, monkeypatch, logits_per_chunk):
    if logits_per_chunk is not None:
        monkeypatch.setattr(compute, "_PXPY_LOGITS_PER_CHUNK", logits_per_chunk)
    x, x_lens = _inputs([60])
    tokens = [4, 4, 9, 1, 11]
    [got] = compute_targets(teacher_model, x, x_lens, [tokens], TargetConfig(types=["pxpy"]))
    reference = _reference_lattice(teacher_model, x, x_lens, 0, tokens)
    T, U = got.frames, len(tokens)
    px_ref = torch.full((U, T + 1), -math.inf, dtype=torch.float64)
    py_ref = torch.empty(U + 1, T, dtype=torch.float64)
    for t in range(T):
        for u in range(U + 1):
            py_ref[u, t] = reference[t, u, BLANK]
            if u < U:
                px_ref[u, t] = reference[t, u, tokens[u]]
    px, py = (torch.from_numpy(got.arrays["pxpy"][k]).double() for k in ("px", "py"))
    torch.testing.assert_close(px, px_ref, rtol=FP16_RTOL, atol=1e-6)
    torch.testing.assert_close(py, py_ref, rtol=FP16_RTOL, atol=1e-6)


def test_one_best_path_is_the_greedy_walk(teacher_model):
    x, x_lens = _inputs([90])
    tokens = [2, 7, 3, 3, 10, 5, 8, 1]
    with torch.no_grad():  # lower the blank so the walk emits symbols as well as blanks
        teacher_model.joiner.output_linear.bias[BLANK] -= 0.3
    [got] = compute_targets(teacher_model, x, x_lens, [tokens], TargetConfig(types=["one_best"], topk=K))
    reference = _reference_lattice(teacher_model, x, x_lens, 0, tokens)
    T, U = got.frames, len(tokens)
    nodes, t, u = [], 0, 0
    while t < T:
        nodes.append([t, u])
        if int(reference[t, u].argmax()) != BLANK and u < U:
            u += 1
        else:
            t += 1
    path = got.arrays["one_best"]
    assert path["nodes"].tolist() == nodes
    assert T < len(nodes) <= T + U  # the walk took both kinds of step
    for n, (t, u) in enumerate(nodes):
        _check_topk(path["logprobs"][n], path["ids"][n], path["rest"][n], reference[t, u])


def test_enc_logits_are_the_encoder_only_top_k(teacher_model):
    x, x_lens = _inputs([50])
    [got] = compute_targets(teacher_model, x, x_lens, [None], TargetConfig(types=["enc_logits"], topk=K))
    with torch.no_grad():
        enc, _ = teacher_model.encoder(x, x_lens)
        j = teacher_model.joiner
        logits = (j.output_linear.weight.double() @ torch.tanh(j.encoder_proj(enc[0])).double().T).T
        reference = (logits + j.output_linear.bias.double()).log_softmax(-1)
    assert got.hyp is None  # no lattice type and no hyp: nothing to search
    arrays = got.arrays["enc_logits"]
    for t in range(got.frames):
        _check_topk(arrays["logprobs"][t], arrays["ids"][t], arrays["rest"][t], reference[t])


@pytest.mark.parametrize("max_sym", [1, 2])
def test_unlabelled_utterances_use_the_best_hypothesis(teacher_model, max_sym):
    x, x_lens = _inputs([60])
    config = TargetConfig(types=["pxpy", "one_best"], topk=K, beam=2, max_sym_per_frame=max_sym)
    [got] = compute_targets(teacher_model, x, x_lens, [None], config)
    with torch.no_grad():
        enc, enc_lens = teacher_model.encoder(x, x_lens)
        best = modified_beam_search(
            teacher_model,
            enc,
            enc_lens,
            beam=2,
            max_sym_per_frame=max_sym,
            return_timestamps=True,
            return_scores=True,
        )
    assert got.hyp.tokens == got.tokens == best.hyps[0]
    assert got.hyp.timestamps == best.timestamps[0]
    assert got.hyp.score == pytest.approx(best.scores[0])
    assert (
        got.arrays["one_best"]["nodes"].tolist() == hypothesis_path(best.timestamps[0], got.frames).tolist()
    )
    assert got.arrays["pxpy"]["px"].shape == (len(got.tokens), got.frames + 1)


def test_a_batch_gives_each_utterance_its_own_targets(teacher_model):
    x, x_lens = _inputs([90, 50, 70], seed=1)
    labels = [[3, 1, 4, 1, 5], None, [9, 2, 6]]
    config = TargetConfig(topk=K, prune_range=S, beam=1)
    batched = compute_targets(teacher_model, x, x_lens, labels, config)
    for b, cut in enumerate(batched):
        [single] = compute_targets(
            teacher_model, x[b : b + 1, : x_lens[b]], x_lens[b : b + 1], [labels[b]], config
        )
        assert (cut.frames, cut.tokens) == (single.frames, single.tokens)
        assert cut.arrays.keys() == single.arrays.keys() == {"pruned", "pxpy", "one_best", "enc_logits"}
        for target_type, arrays in single.arrays.items():
            for name, value in arrays.items():
                other = cut.arrays[target_type][name]
                assert other.shape == value.shape and other.dtype == value.dtype, (target_type, name)
                if value.dtype.kind == "f":
                    np.testing.assert_allclose(other, value, rtol=2 * FP16_RTOL, atol=1e-3)
                elif name in ("start", "nodes"):
                    assert np.array_equal(other, value), (target_type, name)


def test_bad_labels_are_refused(teacher_model):
    x, x_lens = _inputs([40])
    with pytest.raises(ValueError, match="2 label lists for a batch of 1"):
        compute_targets(teacher_model, x, x_lens, [[1], [2]], TargetConfig(types=["pxpy"]))
    with pytest.raises(ValueError, match="vocabulary"):
        compute_targets(teacher_model, x, x_lens, [[12]], TargetConfig(types=["pxpy"]))
    with pytest.raises(ValueError, match="not a non-empty subset"):
        TargetConfig(types=["logits"])
