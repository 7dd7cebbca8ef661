from __future__ import annotations

import pytest
import torch

from kd import losses

from .brute_force import hat_log_probs, rnnt_losses
from .conftest import load_reference, reference_files, tolerance

RNNT_TYPES = ["regular", "modified", "constrained"]
B, T, U, V = 3, 7, 4, 6
FRAME_LENS = [7, 5, 6]
SYMBOL_LENS = [4, 2, 0]  # padding in both axes, and an utterance with no symbols


def _batch(seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, V, (B, U), generator=g)
    for b, n in enumerate(SYMBOL_LENS):
        symbols[b, n:] = 0  # padded with the blank, as icefall does
    boundary = torch.tensor([[0, 0, u, t] for u, t in zip(SYMBOL_LENS, FRAME_LENS)])
    return g, symbols, boundary


def _full_logits(g: torch.Generator) -> torch.Tensor:
    return torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
def test_full_loss_matches_brute_force(backend: str, rnnt_type: str) -> None:
    g, symbols, boundary = _batch()
    logits = _full_logits(g).requires_grad_()
    expected = rnnt_losses(logits, symbols, SYMBOL_LENS, FRAME_LENS, rnnt_type)
    expected_grad = torch.autograd.grad(expected.sum(), logits)[0]
    loss = losses.rnnt_loss(
        logits=logits,
        symbols=symbols,
        termination_symbol=0,
        boundary=boundary,
        rnnt_type=rnnt_type,
        reduction="none",
    )
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-10, atol=1e-10)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
def test_simple_loss_is_the_full_loss_of_an_additive_joiner(backend: str, rnnt_type: str) -> None:
    g, symbols, boundary = _batch(1)
    lm = torch.randn(B, U + 1, V, generator=g, dtype=torch.float64, requires_grad=True)
    am = torch.randn(B, T, V, generator=g, dtype=torch.float64, requires_grad=True)
    logits = am.unsqueeze(2) + lm.unsqueeze(1)
    expected = rnnt_losses(logits, symbols, SYMBOL_LENS, FRAME_LENS, rnnt_type)
    expected_grads = torch.autograd.grad(expected.sum(), [lm, am])
    kwargs = dict(
        symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type, reduction="sum"
    )
    loss = losses.rnnt_loss_simple(lm=lm, am=am, **kwargs)
    torch.testing.assert_close(loss, expected.sum().detach(), rtol=1e-10, atol=1e-10)
    for got, want in zip(torch.autograd.grad(loss, [lm, am]), expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    smoothed = losses.rnnt_loss_smoothed(lm=lm, am=am, lm_only_scale=0.0, am_only_scale=0.0, **kwargs)
    torch.testing.assert_close(smoothed, loss, rtol=1e-10, atol=1e-10)


def test_smoothed_loss_interpolates_the_log_probs() -> None:
    g, symbols, boundary = _batch(2)
    lm = torch.randn(B, U + 1, V, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    kwargs = dict(symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type="modified")
    px, py = losses.get_rnnt_logprobs(lm, am, **kwargs)
    # lm_only_scale = 1: the lm alone, normalised per context; independent of am
    px_lm, py_lm = losses.get_rnnt_logprobs_smoothed(lm, am, lm_only_scale=1.0, am_only_scale=0.0, **kwargs)
    lm_logp = lm.log_softmax(dim=2)
    torch.testing.assert_close(py_lm, lm_logp[:, :, 0:1].expand(B, U + 1, T))
    torch.testing.assert_close(px_lm, torch.gather(lm_logp[:, :U], 2, symbols.unsqueeze(2)).expand(B, U, T))
    px_half, py_half = losses.get_rnnt_logprobs_smoothed(
        lm, am, lm_only_scale=0.5, am_only_scale=0.0, **kwargs
    )
    torch.testing.assert_close(py_half, 0.5 * py + 0.5 * py_lm)
    torch.testing.assert_close(px_half, 0.5 * px + 0.5 * px_lm)


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
def test_pruned_loss_with_every_position_kept_equals_the_full_loss(backend: str, rnnt_type: str) -> None:
    g, symbols, boundary = _batch(3)
    logits = _full_logits(g)
    lm = torch.randn(B, U + 1, V, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    _, (px_grad, py_grad) = losses.rnnt_loss_simple(
        lm=lm,
        am=am,
        symbols=symbols,
        termination_symbol=0,
        boundary=boundary,
        rnnt_type=rnnt_type,
        return_grad=True,
    )
    ranges = losses.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=U + 3)
    assert ranges.shape == (B, T, U + 1) and (ranges == torch.arange(U + 1)).all()
    kwargs = dict(
        symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type, reduction="none"
    )
    full = losses.rnnt_loss(logits=logits, **kwargs)
    pruned = losses.rnnt_loss_pruned(logits=logits, ranges=ranges, **kwargs)
    torch.testing.assert_close(pruned, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
def test_pruned_loss_matches_brute_force_on_the_pruned_lattice(backend: str, rnnt_type: str) -> None:
    """Arcs outside the kept window have probability 0; inside it they are the pruned logits' softmax."""
    g, symbols, boundary = _batch(4)
    s_range = 3
    start = torch.tensor([[0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0, 0], [0] * 7])
    ranges = start.unsqueeze(2) + torch.arange(s_range)
    logits = torch.randn(B, T, s_range, V, generator=g, dtype=torch.float64, requires_grad=True)
    full_logp = losses.scatter_pruned(logits.log_softmax(dim=3), ranges, U + 1)  # -inf off the window
    expected = rnnt_losses(logits, symbols, SYMBOL_LENS, FRAME_LENS, rnnt_type, log_probs=full_logp)
    loss = losses.rnnt_loss_pruned(
        logits=logits,
        symbols=symbols,
        ranges=ranges,
        termination_symbol=0,
        boundary=boundary,
        rnnt_type=rnnt_type,
        reduction="none",
    )
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    finite = torch.isfinite(expected)
    want = torch.autograd.grad(expected[finite].sum(), logits)[0]
    got = torch.autograd.grad(loss[finite].sum(), logits)[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_hat_loss_matches_brute_force(backend: str) -> None:
    g, symbols, boundary = _batch(5)
    ranges = torch.arange(U + 1).expand(B, T, U + 1).contiguous()
    logits = _full_logits(g).requires_grad_()
    expected = rnnt_losses(logits, symbols, SYMBOL_LENS, FRAME_LENS, log_probs=hat_log_probs(logits))
    loss = losses.rnnt_loss_pruned(
        logits=logits,
        symbols=symbols,
        ranges=ranges,
        termination_symbol=0,
        boundary=boundary,
        reduction="none",
        use_hat_loss=True,
    )
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    got, want = (torch.autograd.grad(x.sum(), logits)[0] for x in (loss, expected))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("s_range", [2, 3, 5])
def test_prune_ranges_are_monotone_windows_inside_the_lattice(rnnt_type: str, s_range: int) -> None:
    g = torch.Generator().manual_seed(6)
    n, frames, symbols_max = 6, 30, 12
    symbol_lens = torch.tensor([12, 7, 1, 12, 0, 5])
    frame_lens = torch.tensor([30, 21, 9, 14, 30, 5])
    boundary = losses.boundary_from_lengths(symbol_lens, frame_lens)
    lm = 3 * torch.randn(n, symbols_max + 1, 9, generator=g)
    am = 3 * torch.randn(n, frames, 9, generator=g)
    symbols = torch.randint(1, 9, (n, symbols_max), generator=g)
    _, (px_grad, py_grad) = losses.rnnt_loss_simple(
        lm=lm,
        am=am,
        symbols=symbols,
        termination_symbol=0,
        boundary=boundary,
        rnnt_type=rnnt_type,
        return_grad=True,
    )
    ranges = losses.get_rnnt_prune_ranges(
        px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=s_range
    )
    k = ranges.shape[2]
    assert k >= s_range and ranges.dtype == torch.int64 and ranges.shape[:2] == (n, frames)
    start = ranges[:, :, 0]
    assert (ranges == start.unsqueeze(2) + torch.arange(k)).all()
    assert (ranges >= 0).all() and (ranges <= symbols_max).all()
    assert (start[:, 0] == 0).all()
    steps = start[:, 1:] - start[:, :-1]
    assert (steps >= 0).all() and (steps <= (k - 1 if rnnt_type == "regular" else 1)).all()
    for b in range(n):  # the last real frame's window holds the final node
        assert symbol_lens[b] in ranges[b, frame_lens[b] - 1].tolist()


def test_prune_ranges_raise_s_range_for_long_transcripts(caplog: pytest.LogCaptureFixture) -> None:
    """Regular RNN-T climbs at most s_range - 1 symbols per frame: 10 symbols in 3 frames need 5."""
    px_grad = torch.rand(1, 10, 4)
    py_grad = torch.rand(1, 11, 3)
    boundary = torch.tensor([[0, 0, 10, 3]])
    ranges = losses.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=2)
    assert ranges.shape == (1, 3, 5)
    assert "using 5" in caplog.text


def test_do_rnnt_pruning_takes_am_first() -> None:
    g = torch.Generator().manual_seed(7)
    am, lm = torch.randn(2, 4, 3, generator=g), torch.randn(2, 6, 5, generator=g)
    ranges = torch.tensor([[0, 1, 1, 3], [2, 2, 4, 4]]).unsqueeze(2) + torch.arange(2)
    am_pruned, lm_pruned = losses.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
    assert am_pruned.shape == (2, 4, 2, 3) and lm_pruned.shape == (2, 4, 2, 5)
    for b in range(2):
        for t in range(4):
            for k in range(2):
                assert torch.equal(am_pruned[b, t, k], am[b, t])
                assert torch.equal(lm_pruned[b, t, k], lm[b, ranges[b, t, k]])


def test_reductions() -> None:
    g, symbols, boundary = _batch(8)
    logits = _full_logits(g)
    kwargs = dict(logits=logits, symbols=symbols, termination_symbol=0, boundary=boundary)
    per_utt = losses.rnnt_loss(**kwargs, reduction="none")
    assert per_utt.shape == (B,)
    torch.testing.assert_close(losses.rnnt_loss(**kwargs, reduction="sum"), per_utt.sum())
    torch.testing.assert_close(losses.rnnt_loss(**kwargs), per_utt.mean())  # k2's default: mean
    with pytest.raises(ValueError, match="reduction"):
        losses.rnnt_loss(**kwargs, reduction=None)


def test_utterance_without_symbols_is_a_row_of_blanks(backend: str) -> None:
    g, symbols, boundary = _batch(9)
    logits = _full_logits(g)
    loss = losses.rnnt_loss(
        logits=logits, symbols=symbols, termination_symbol=0, boundary=boundary, reduction="none"
    )
    b = SYMBOL_LENS.index(0)
    torch.testing.assert_close(loss[b], -logits[b, : FRAME_LENS[b], 0].log_softmax(dim=1)[:, 0].sum())


@pytest.mark.parametrize("rnnt_type", ["modified", "constrained"])
def test_fewer_frames_than_symbols_gives_inf_and_zero_gradient(backend: str, rnnt_type: str) -> None:
    """k2 asserts here; we return +inf for that utterance (documented) and keep the others usable."""
    g, symbols, _ = _batch(10)
    boundary = torch.tensor([[0, 0, 4, 3], [0, 0, 2, 5], [0, 0, 0, 6]])
    logits = _full_logits(g).requires_grad_()
    loss = losses.rnnt_loss(
        logits=logits,
        symbols=symbols,
        termination_symbol=0,
        boundary=boundary,
        rnnt_type=rnnt_type,
        reduction="none",
    )
    assert loss[0] == float("inf") and torch.isfinite(loss[1:]).all()
    loss.sum().backward()
    assert (logits.grad[0] == 0).all() and torch.isfinite(logits.grad).all()
    assert logits.grad[1].abs().sum() > 0


def test_labels_outside_the_vocabulary_are_an_error() -> None:
    g, symbols, boundary = _batch(11)
    logits = _full_logits(g)
    for bad in (V, -1):
        symbols[1, 3] = bad
        with pytest.raises(ValueError, match="outside the vocabulary"):
            losses.rnnt_loss(logits=logits, symbols=symbols, termination_symbol=0, boundary=boundary)
    with pytest.raises(TypeError, match="int64"):
        losses.rnnt_loss(logits=logits, symbols=symbols.int(), termination_symbol=0, boundary=boundary)
    with pytest.raises(ValueError, match="termination_symbol"):
        losses.rnnt_loss(
            logits=logits, symbols=symbols.clamp(0, V - 1), termination_symbol=V, boundary=boundary
        )


@pytest.mark.parametrize("column, value", [(2, U + 1), (3, T + 1)])
def test_lengths_beyond_the_tensors_are_an_error(column: int, value: int) -> None:
    g, symbols, boundary = _batch(12)
    lm = torch.randn(B, U + 1, V, generator=g)
    am = torch.randn(B, T, V, generator=g)
    boundary[0, column] = value
    with pytest.raises(ValueError, match="outside the lattice"):
        losses.rnnt_loss_simple(lm=lm, am=am, symbols=symbols, termination_symbol=0, boundary=boundary)


def test_nan_logits_are_an_error(backend: str) -> None:
    g, symbols, boundary = _batch(13)
    logits = _full_logits(g)
    logits[2, 1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        losses.rnnt_loss(logits=logits, symbols=symbols, termination_symbol=0, boundary=boundary)


def test_ranges_outside_the_lattice_are_an_error() -> None:
    g, symbols, boundary = _batch(14)
    logits = torch.randn(B, T, 2, V, generator=g)
    ranges = torch.full((B, T, 2), U, dtype=torch.int64) + torch.arange(2)  # U+1 is past the last row
    with pytest.raises(ValueError, match="ranges must lie in"):
        losses.rnnt_loss_pruned(logits=logits, symbols=symbols, ranges=ranges, termination_symbol=0)


@pytest.mark.parametrize("name", reference_files("simple_"))
def test_k2_reference_simple(backend: str, name: str) -> None:
    d = load_reference(name)
    lm, am = d["in_lm"].clone().requires_grad_(), d["in_am"].clone().requires_grad_()
    kwargs = dict(
        lm=lm,
        am=am,
        symbols=d["in_symbols"],
        termination_symbol=d["arg_termination_symbol"],
        boundary=d.get("in_boundary"),
        rnnt_type=d["arg_rnnt_type"],
        delay_penalty=d["arg_delay_penalty"],
    )
    tol = tolerance(d)
    loss, (px_grad, py_grad) = losses.rnnt_loss_simple(**kwargs, reduction="none", return_grad=True)
    torch.testing.assert_close(loss, d["out_loss_none"], **tol)
    torch.testing.assert_close(px_grad, d["out_px_grad"], **tol)
    torch.testing.assert_close(py_grad, d["out_py_grad"], **tol)
    torch.testing.assert_close(losses.rnnt_loss_simple(**kwargs), d["out_loss_mean"], **tol)
    losses.rnnt_loss_simple(**kwargs, reduction="sum").backward()
    torch.testing.assert_close(lm.grad, d["grad_lm"], **tol)
    torch.testing.assert_close(am.grad, d["grad_am"], **tol)
    px, py = losses.get_rnnt_logprobs(
        d["in_lm"],
        d["in_am"],
        d["in_symbols"],
        0,
        rnnt_type=d["arg_rnnt_type"],
        boundary=d.get("in_boundary"),
    )
    torch.testing.assert_close(px, d["out_px"], **tol)
    torch.testing.assert_close(py, d["out_py"], **tol)


@pytest.mark.parametrize("name", reference_files("full_"))
def test_k2_reference_full(backend: str, name: str) -> None:
    d = load_reference(name)
    logits = d["in_logits"].clone().requires_grad_()
    kwargs = dict(
        logits=logits,
        symbols=d["in_symbols"],
        termination_symbol=0,
        boundary=d.get("in_boundary"),
        rnnt_type=d["arg_rnnt_type"],
    )
    tol = tolerance(d)
    torch.testing.assert_close(losses.rnnt_loss(**kwargs, reduction="none"), d["out_loss_none"], **tol)
    torch.testing.assert_close(losses.rnnt_loss(**kwargs, reduction="mean"), d["out_loss_mean"], **tol)
    losses.rnnt_loss(**kwargs, reduction="sum").backward()
    torch.testing.assert_close(logits.grad, d["grad_logits"], **tol)
    px, py = losses.get_rnnt_logprobs_joint(
        d["in_logits"], d["in_symbols"], 0, rnnt_type=d["arg_rnnt_type"], boundary=d.get("in_boundary")
    )
    torch.testing.assert_close(px, d["out_px"], **tol)
    torch.testing.assert_close(py, d["out_py"], **tol)


@pytest.mark.parametrize("name", reference_files("pruned_"))
def test_k2_reference_pruned_pipeline(backend: str, name: str) -> None:
    """icefall's pipeline (simple loss -> ranges -> pruning -> joiner -> pruned loss) and its gradients."""
    d = load_reference(name)
    tol = tolerance(d)
    rnnt_type, symbols = d["arg_rnnt_type"], d["in_symbols"]
    simple, (px_grad, py_grad) = losses.rnnt_loss_simple(
        lm=d["in_lm"],
        am=d["in_am"],
        symbols=symbols,
        termination_symbol=0,
        boundary=d["in_boundary_for_ranges"],
        rnnt_type=rnnt_type,
        reduction="none",
        return_grad=True,
    )
    torch.testing.assert_close(simple, d["out_simple_loss_none"], **tol)
    for grads in ((px_grad, py_grad), (d["out_px_grad"], d["out_py_grad"])):
        ranges = losses.get_rnnt_prune_ranges(
            px_grad=grads[0], py_grad=grads[1], boundary=d["in_boundary_for_ranges"], s_range=d["arg_s_range"]
        )
        assert torch.equal(ranges, d["out_ranges"])

    enc, dec = d["in_enc"].clone().requires_grad_(), d["in_dec"].clone().requires_grad_()
    W, bias = d["in_W"].clone().requires_grad_(), d["in_bias"].clone().requires_grad_()
    enc_pruned, dec_pruned = losses.do_rnnt_pruning(am=enc, lm=dec, ranges=ranges)
    torch.testing.assert_close(enc_pruned, d["out_enc_pruned"], **tol)
    torch.testing.assert_close(dec_pruned, d["out_dec_pruned"], **tol)
    logits = torch.tanh(enc_pruned + dec_pruned) @ W + bias
    kwargs = dict(symbols=symbols, ranges=ranges, termination_symbol=0, boundary=d.get("in_boundary"))
    loss = losses.rnnt_loss_pruned(logits=logits, rnnt_type=rnnt_type, reduction="none", **kwargs)
    torch.testing.assert_close(loss, d["out_loss_none"], **tol)
    losses.rnnt_loss_pruned(logits=logits, rnnt_type=rnnt_type, reduction="sum", **kwargs).backward()
    for key, x in (("enc", enc), ("dec", dec), ("W", W), ("bias", bias)):
        torch.testing.assert_close(x.grad, d[f"grad_{key}"], **tol)
    px, py = losses.get_rnnt_logprobs_pruned(d["out_logits"], rnnt_type=rnnt_type, **kwargs)
    torch.testing.assert_close(px, d["out_pruned_px"], **tol)
    torch.testing.assert_close(py, d["out_pruned_py"], **tol)


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
def test_gradcheck_full_and_simple(backend: str, rnnt_type: str) -> None:
    g = torch.Generator().manual_seed(15)
    symbols = torch.tensor([[2, 1], [3, 0]])
    boundary = torch.tensor([[0, 0, 2, 3], [0, 0, 1, 2]])  # padding in both axes
    logits = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    lm = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    am = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    kwargs = dict(
        symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type, reduction="none"
    )
    assert torch.autograd.gradcheck(lambda x: losses.rnnt_loss(logits=x, **kwargs), (logits,))
    assert torch.autograd.gradcheck(lambda a, b: losses.rnnt_loss_simple(lm=a, am=b, **kwargs), (lm, am))


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_batch_without_any_symbols(backend: str, rnnt_type: str) -> None:
    """S = 0 for the whole batch: only blanks; the pruned lattice is a single row."""
    g = torch.Generator().manual_seed(16)
    symbols = torch.zeros(2, 0, dtype=torch.int64)
    boundary = torch.tensor([[0, 0, 0, 5], [0, 0, 0, 3]])
    lm = torch.randn(2, 1, V, generator=g, dtype=torch.float64)
    am = torch.randn(2, 5, V, generator=g, dtype=torch.float64)
    kwargs = dict(
        symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type, reduction="none"
    )
    simple, (px_grad, py_grad) = losses.rnnt_loss_simple(lm=lm, am=am, return_grad=True, **kwargs)
    ranges = losses.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=5)
    assert ranges.shape == (2, 5, 1) and (ranges == 0).all()
    logits = torch.randn(2, 5, 1, V, generator=g, dtype=torch.float64)
    pruned = losses.rnnt_loss_pruned(logits=logits, ranges=ranges, **kwargs)
    blank_logp = logits[:, :, 0].log_softmax(dim=-1)[:, :, 0]
    torch.testing.assert_close(pruned, -torch.stack([blank_logp[0].sum(), blank_logp[1, :3].sum()]))
    simple_blank_logp = (am + lm).log_softmax(dim=-1)[:, :, 0]
    torch.testing.assert_close(
        simple, -torch.stack([simple_blank_logp[0].sum(), simple_blank_logp[1, :3].sum()])
    )
