"""The LSTM LM against the LSTM equations in float64 (values and gradients), its step API, its config and
the batching of its text."""

from __future__ import annotations

import random

import pytest
import torch

from kd.config import ConfigError, from_dict
from kd.lm import LmConfig, LstmLm
from kd.lm.data import batch_indices, collate

V = 11


def make_lm(num_layers: int = 2, tie_weights: bool = False, seed: int = 0) -> LstmLm:
    torch.manual_seed(seed)
    dim = 6
    return LstmLm(
        V, dim, dim if tie_weights else 7, num_layers, dropout=0.0, tie_weights=tie_weights
    ).double()


def reference_log_probs(lm: LstmLm, sentence: list[int]) -> torch.Tensor:
    """(U+1, V) log-probs of the token after the start symbol 0 and after each prefix of ``sentence``, from
    the LSTM equations (gates i, f, g, o as torch orders them) and an explicit log-sum-exp."""
    layers = [
        [getattr(lm.lstm, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        for k in range(lm.num_layers)
    ]
    h = [torch.zeros(lm.hidden_dim, dtype=torch.float64) for _ in layers]
    c = [torch.zeros(lm.hidden_dim, dtype=torch.float64) for _ in layers]
    rows = []
    for token in [0, *sentence]:
        x = lm.embedding.weight[token]
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
            i, f, g, o = (w_ih @ x + b_ih + w_hh @ h[k] + b_hh).chunk(4)
            c[k] = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
            h[k] = torch.sigmoid(o) * torch.tanh(c[k])
            x = h[k]
        logits = lm.output.weight @ x + lm.output.bias
        top = logits.max()
        rows.append(logits - top - torch.log(torch.exp(logits - top).sum()))
    return torch.stack(rows)


SENTENCES = [[3, 1, 4, 1, 5], [], [9, 2], [6, 10, 7, 8]]


def padded_batch(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, U) with large valid ids as padding, so that an LM that reads its padding gets other numbers."""
    U = max(len(s) for s in sentences)
    tokens = torch.full((len(sentences), U), V - 1, dtype=torch.int64)
    for b, s in enumerate(sentences):
        tokens[b, : len(s)] = torch.tensor(s, dtype=torch.int64)
    return tokens, torch.tensor([len(s) for s in sentences])


@pytest.mark.parametrize(("num_layers", "tie_weights"), [(1, False), (2, False), (2, True)])
def test_nll_matches_the_lstm_equations(num_layers: int, tie_weights: bool) -> None:
    lm = make_lm(num_layers, tie_weights)
    tokens, lens = padded_batch(SENTENCES)
    nll = lm(tokens, lens)
    assert nll.shape == (len(SENTENCES), tokens.size(1) + 1) and nll.dtype == torch.float64

    expected = torch.zeros_like(nll)
    for b, sentence in enumerate(SENTENCES):
        log_probs = reference_log_probs(lm, sentence)
        for u, target in enumerate([*sentence, 0]):  # the end symbol is the boundary id 0
            expected[b, u] = -log_probs[u, target]
    torch.testing.assert_close(nll, expected, rtol=1e-10, atol=1e-12)
    assert (nll[1, 1:] == 0).all() and (nll[2, 3:] == 0).all()  # padding adds nothing

    params = list(lm.parameters())
    grads = torch.autograd.grad(nll.sum(), params)
    expected_grads = torch.autograd.grad(expected.sum(), params)
    for p, got, want in zip(params, grads, expected_grads):
        assert got.abs().sum() > 0, p.shape
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tie_weights", [False, True])
def test_step_chained_over_a_sentence_gives_the_forward_log_probs(tie_weights: bool) -> None:
    lm = make_lm(tie_weights=tie_weights).eval()
    tokens, lens = padded_batch(SENTENCES)
    nll = lm(tokens, lens)
    for b, sentence in enumerate(SENTENCES):
        reference = reference_log_probs(lm, sentence)
        state = lm.init_state(1, "cpu")
        for u, (token, target) in enumerate(zip([0, *sentence], [*sentence, 0])):
            log_probs, state = lm.step(torch.tensor([token]), state)
            assert log_probs.shape == (1, V)
            torch.testing.assert_close(log_probs[0], reference[u], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(-log_probs[0, target], nll[b, u], rtol=1e-10, atol=1e-12)


def test_select_state_reorders_rows() -> None:
    lm = make_lm().eval()
    first = torch.tensor([0, 0, 0])
    second = torch.tensor([3, 5, 7])
    _, state = lm.step(second, lm.step(first, lm.init_state(3, "cpu"))[1])
    index = torch.tensor([2, 0, 2, 1])
    picked = lm.select_state(state, index)
    assert picked[0].shape == (2, 4, lm.hidden_dim) and picked[1].shape == (2, 4, lm.hidden_dim)
    after, _ = lm.step(torch.tensor([1, 2, 3, 4]), picked)
    for row, source in enumerate(index.tolist()):
        torch.testing.assert_close(picked[0][:, row], state[0][:, source], rtol=0, atol=0)
        torch.testing.assert_close(picked[1][:, row], state[1][:, source], rtol=0, atol=0)
        # the row alone, stepped from its own history, gives the same next-token distribution
        alone = lm.init_state(1, "cpu")
        for token in (0, second[source].item(), row + 1):
            log_probs, alone = lm.step(torch.tensor([token]), alone)
        torch.testing.assert_close(after[row], log_probs[0], rtol=1e-10, atol=1e-12)


def test_bad_input_and_config() -> None:
    lm = make_lm()
    with pytest.raises(ValueError, match="lens must lie"):
        lm(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="tokens must be"):
        lm(torch.zeros(3, dtype=torch.int64), torch.tensor([3]))
    with pytest.raises(ValueError, match="tie_weights"):
        LstmLm(V, 6, 7, tie_weights=True)
    with pytest.raises(ValueError, match="tie_weights"):
        LmConfig(embedding_dim=8, hidden_dim=16, tie_weights=True)
    with pytest.raises(ValueError, match="batches need a size"):
        LmConfig(max_tokens=0, max_sentences=0)
    with pytest.raises(ValueError, match="dropout"):
        LmConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="hidden_size"):
        from_dict(LmConfig, {"hidden_size": 8})


def test_batches_hold_every_sentence_once_within_the_limits() -> None:
    rng = random.Random(0)
    lengths = [rng.randrange(0, 13) for _ in range(60)]
    seen_orders = set()
    for seed in (1, 2):
        batches = [b.tolist() for b in batch_indices(lengths, max_tokens=40, max_sentences=5, seed=seed)]
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        for batch in batches:
            padded = len(batch) * (max(lengths[i] for i in batch) + 1)
            assert len(batch) <= 5 and (padded <= 40 or len(batch) == 1)
        again = batch_indices(lengths, max_tokens=40, max_sentences=5, seed=seed)
        assert [b.tolist() for b in again] == batches
        seen_orders.add(tuple(i for batch in batches for i in batch))
    assert len(seen_orders) == 2  # another seed, another order
    in_order = batch_indices(lengths, max_tokens=40)
    assert [i for batch in in_order for i in batch.tolist()] == list(range(len(lengths)))

    tokens, lens = collate([[4, 2], [], [7, 7, 7]])
    assert tokens.tolist() == [[4, 2, 0], [0, 0, 0], [7, 7, 7]] and lens.tolist() == [2, 0, 3]
