from __future__ import annotations

import pytest
import torch

from kd import losses

B, T, U, V = 3, 6, 4, 7
FRAME_LENS = torch.tensor([6, 4, 5])
SYMBOL_LENS = torch.tensor([4, 1, 0])


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, V, (B, U), generator=g)
    start = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    ranges = start.unsqueeze(2) + torch.arange(3)
    return logits, symbols, ranges


def test_boundary_from_lengths() -> None:
    boundary = losses.boundary_from_lengths(SYMBOL_LENS, FRAME_LENS.int())
    assert boundary.dtype == torch.int64
    assert boundary.tolist() == [[0, 0, 4, 6], [0, 0, 1, 4], [0, 0, 0, 5]]


def test_full_node_mask() -> None:
    mask = losses.full_node_mask(FRAME_LENS, SYMBOL_LENS, T, U)
    assert mask.shape == (B, T, U + 1) and mask.dtype == torch.bool
    for b in range(B):
        for t in range(T):
            for u in range(U + 1):
                assert mask[b, t, u] == (t < FRAME_LENS[b] and u <= SYMBOL_LENS[b])
    with pytest.raises(ValueError, match="exceed the padded lattice"):
        losses.full_node_mask(FRAME_LENS + 1, SYMBOL_LENS, T, U)


def test_pruned_node_mask() -> None:
    _, _, ranges = _inputs()
    mask = losses.pruned_node_mask(ranges, FRAME_LENS, SYMBOL_LENS)
    full = losses.full_node_mask(FRAME_LENS, SYMBOL_LENS, T, U)
    assert torch.equal(mask, losses.gather_pruned(full, ranges))
    assert mask[0].all() and mask[2, :5, 0].all() and not mask[2, :, 1:].any() and not mask[2, 5].any()
    assert mask[1, :4, :2].all() and not mask[1, :, 2].any() and not mask[1, 4:].any()


def test_gather_and_scatter_pruned() -> None:
    logits, _, ranges = _inputs()
    kept = losses.gather_pruned(logits, ranges)
    assert kept.shape == (B, T, 3, V)
    for b in range(B):
        for t in range(T):
            for k in range(3):
                assert torch.equal(kept[b, t, k], logits[b, t, ranges[b, t, k]])
    back = losses.scatter_pruned(kept, ranges, U + 1, fill=0.0)
    on_window = losses.scatter_pruned(torch.ones(B, T, 3, dtype=torch.bool), ranges, U + 1, fill=False)
    assert torch.equal(back[on_window], logits[on_window]) and (back[~on_window] == 0).all()
    with pytest.raises(ValueError, match="ranges must lie in"):
        losses.gather_pruned(logits[:, :, :2], ranges)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_node_logprobs_full_and_pruned(temperature: float) -> None:
    logits, symbols, ranges = _inputs(1)
    blank_logp, symbol_logp = losses.node_logprobs(
        logits, symbols, blank_id=0, symbol_lens=SYMBOL_LENS, temperature=temperature
    )
    logp = (logits / temperature).log_softmax(dim=3)
    for b in range(B):
        for t in range(T):
            for u in range(U + 1):
                assert blank_logp[b, t, u] == pytest.approx(logp[b, t, u, 0].item(), abs=1e-12)
                want = logp[b, t, u, symbols[b, u]].item() if u < SYMBOL_LENS[b] else float("-inf")
                assert symbol_logp[b, t, u] == pytest.approx(want, abs=1e-12)
    pruned = losses.node_logprobs(
        losses.gather_pruned(logits, ranges),
        symbols,
        ranges=ranges,
        symbol_lens=SYMBOL_LENS,
        temperature=temperature,
    )
    torch.testing.assert_close(pruned[0], losses.gather_pruned(blank_logp, ranges))
    torch.testing.assert_close(pruned[1], losses.gather_pruned(symbol_logp, ranges))


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_px_py_to_nodes_inverts_the_k2_layout(rnnt_type: str) -> None:
    logits, symbols, _ = _inputs(2)
    px, py = losses.get_rnnt_logprobs_joint(logits, symbols, 0, rnnt_type=rnnt_type)
    blank_logp, symbol_logp = losses.px_py_to_nodes(px, py)
    want_blank, want_symbol = losses.node_logprobs(logits, symbols)
    torch.testing.assert_close(blank_logp, want_blank)
    torch.testing.assert_close(symbol_logp, want_symbol)


def test_node_logprobs_bad_input() -> None:
    logits, symbols, ranges = _inputs()
    with pytest.raises(ValueError, match="pass ranges"):
        losses.node_logprobs(logits[:, :, :3], symbols)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        losses.node_logprobs(logits, symbols + V)
    with pytest.raises(ValueError, match="temperature"):
        losses.node_logprobs(logits, symbols, temperature=0.0)


@pytest.mark.parametrize("scale", [1.0, 0.4])
def test_log_softmax_at_values_and_gradcheck(scale: float) -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (2, 3, 4), generator=g)
    out = losses.log_softmax_at(logits, index, scale)
    torch.testing.assert_close(out, torch.gather((scale * logits).log_softmax(dim=-1), -1, index))
    assert torch.autograd.gradcheck(lambda x: losses.log_softmax_at(x, index, scale), (logits,))
