"""The CPU dropout of kd.models.dropout: a Bernoulli mask with the requested rate, torch's scaling and
gradient, and attention with it equal to torch's scaled dot-product attention where no weight is dropped."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kd.models import chunk_attention_mask
from kd.models.attention import attend_with_dropout
from kd.models.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_mask_rate_and_scale(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = dropout(x, p, training=True)
    kept = y != 0
    # 1e6 Bernoulli draws: the standard deviation of the kept fraction is below 5e-4
    assert abs(kept.double().mean().item() - (1 - p)) < 2.5e-3
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=1e-4)
    assert abs(y.double().mean().item() - 1.0) < 5e-3
    # no structure along either axis: every row and column keeps about 1 - p of its elements
    assert (kept.double().mean(dim=0) - (1 - p)).abs().max() < 0.07
    assert (kept.double().mean(dim=1) - (1 - p)).abs().max() < 0.07


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 50, 32, requires_grad=True)
    y = dropout(x, 0.2, training=True)
    grad = torch.randn_like(y)
    y.backward(grad)
    kept = y.detach() != 0
    scale = y.detach()[kept] / x.detach()[kept]
    assert torch.allclose(scale, scale[0].expand_as(scale)) and abs(scale[0].item() - 1 / 0.8) < 1e-4
    assert torch.equal(x.grad, grad * kept * scale[0])


def test_eval_mode_and_zero_rate_are_the_identity() -> None:
    x = torch.randn(3, 7)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x


def test_seeded_masks_repeat_and_successive_masks_differ() -> None:
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    a, b = dropout(x, 0.5, True), dropout(x, 0.5, True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5, True), a)
    assert not torch.equal(a, b)


def test_rate_must_be_below_one() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


@pytest.mark.parametrize("chunk", [None, 4])
def test_attention_without_dropped_weights_is_sdpa(chunk: int | None) -> None:
    torch.manual_seed(2)
    b, h, t, d = 2, 3, 13, 8
    q, k, v = (torch.randn(b, h, t, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = None if chunk is None else chunk_attention_mask(t, chunk, 4)[None, None].expand(b, 1, t, t)
    ours = attend_with_dropout(q, k, v, mask, 0.0)
    reference = F.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), attn_mask=mask)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    q2, k2, v2 = (z.detach().requires_grad_() for z in (q, k, v))
    ref_grads = torch.autograd.grad(
        F.scaled_dot_product_attention(q2, k2, v2, attn_mask=mask).square().sum(), (q2, k2, v2)
    )
    for ours_g, ref_g in zip(grads, ref_grads):
        torch.testing.assert_close(ours_g, ref_g, rtol=1e-9, atol=1e-11)


def test_attention_dropout_drops_weights_and_keeps_rows_finite() -> None:
    torch.manual_seed(4)
    q, k = torch.randn(2, 2, 9, 4), torch.randn(2, 2, 9, 4)
    v = torch.eye(9).expand(2, 2, 9, 9)  # the output rows are the attention weights themselves
    mask = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    mask[0, :, 3] = False  # a query that may attend to nothing
    weights = attend_with_dropout(q, k, v, mask, 0.5)
    assert torch.isfinite(weights).all()
    assert (weights == 0).any() and (weights > 0).any()
    undropped = attend_with_dropout(q, k, v, mask, 0.0)
    kept = weights != 0
    torch.testing.assert_close(weights[kept], 2 * undropped[kept])
