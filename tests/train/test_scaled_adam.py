"""ScaledAdam against its equations (Zipformer paper, section 4.1) run element by element in float64."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from kd.config import ConfigError
from kd.train.optim import OptimConfig, build_optimizer
from kd.train.scaled_adam import ScaledAdam

BETA1, BETA2, EPS, SCALAR_LR, MIN_RMS, MAX_RMS, SCALAR_MAX = 0.9, 0.98, 1e-8, 0.1, 1e-5, 3.0, 10.0


def _reference(
    params: list[torch.Tensor], grads: list[list[torch.Tensor]], lr: float, period: int, clip_period: int
) -> list[torch.Tensor]:
    """The update written out per tensor in float64, one step at a time."""
    p = [x.double().clone() for x in params]
    delta = [torch.zeros_like(x) for x in p]
    v = [torch.zeros_like(x) for x in p]
    rms = [x.square().mean().sqrt().item() for x in p]
    scale_grads = [[0.0] * period for _ in p]
    scale_v = [0.0 for _ in p]
    history: list[float] = []
    threshold = math.inf
    for k, step_grads in enumerate(grads):
        g = [x.double().clone() for x in step_grads]
        norm = math.sqrt(
            sum(
                (gi.square().sum().item() * (rms[i] ** 2 if gi.numel() > 1 else 1.0))
                for i, gi in enumerate(g)
            )
        )
        history = (history + [norm])[-clip_period:]
        if k % clip_period == 0:
            threshold = 2.0 * statistics.median(history)
        if norm > threshold:
            g = [gi * threshold / norm for gi in g]
        for i in range(len(p)):
            if p[i].numel() == 1:
                v[i] = BETA2 * v[i] + (1 - BETA2) * g[i] ** 2
                v_hat = v[i] / (1 - BETA2 ** (k + 1))
                delta[i] = BETA1 * delta[i] - lr * SCALAR_LR * (1 - BETA1) * g[i] / (v_hat.sqrt() + EPS)
                p[i] = (p[i] + delta[i]).clamp(-SCALAR_MAX, SCALAR_MAX)
                continue
            scale_grads[i][k % period] = (p[i] * g[i]).sum().item()
            if k % period == period - 1:
                rms[i] = p[i].square().mean().sqrt().item()
                if k >= period:
                    b = BETA2**period
                    scale_v[i] = b * scale_v[i] + (1 - b) * statistics.fmean(s * s for s in scale_grads[i])
                    scale_v_hat = scale_v[i] / (1 - b ** (k // period))
                    scale_step = -lr * SCALAR_LR * sum(scale_grads[i]) / (math.sqrt(scale_v_hat) + EPS)
                    if rms[i] < MIN_RMS:
                        scale_step = lr * SCALAR_LR * period
                    elif rms[i] > MAX_RMS:
                        scale_step = -lr * SCALAR_LR * period
                    delta[i] = delta[i] + (1 - BETA1) * scale_step * p[i]
            v[i] = BETA2 * v[i] + (1 - BETA2) * g[i] ** 2
            v_hat = v[i] / (1 - BETA2 ** (k + 1))
            delta[i] = BETA1 * delta[i] - lr * (1 - BETA1) * max(rms[i], MIN_RMS) * g[i] / (
                v_hat.sqrt() + EPS
            )
            p[i] = p[i] + delta[i]
    return p


def _run(params: list[torch.Tensor], grads: list[list[torch.Tensor]], optimizer: ScaledAdam) -> None:
    for step_grads in grads:
        for x, g in zip(params, step_grads):
            x.grad = g.clone()
        optimizer.step()


def _problem(seed: int = 0, steps: int = 14) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (5,), (1,), (3, 2, 4)]
    params = [torch.randn(s, generator=gen) * scale for s, scale in zip(shapes, (0.1, 1.0, 0.5, 4.0))]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]
    grads[9] = [g * 50 for g in grads[9]]  # a spike the median-based clipping must catch
    return params, grads


def test_matches_the_equations_in_float64():
    params, grads = _problem()
    expected = _reference(params, grads, lr=0.05, period=4, clip_period=5)
    model = [torch.nn.Parameter(x.clone()) for x in params]
    optimizer = ScaledAdam(model, lr=0.05, size_update_period=4, clipping_period=5)
    _run(model, grads, optimizer)
    assert optimizer.clipped_steps >= 1
    for got, want in zip(model, expected):
        torch.testing.assert_close(got.detach().double(), want, rtol=1e-5, atol=1e-7)


def test_step_is_relative_to_the_tensor_scale():
    """The same gradients move a tensor ten times larger by ten times as much."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(8, 8, generator=gen)
    grad = torch.randn(8, 8, generator=gen)
    moves = []
    for scale in (1.0, 10.0):
        p = torch.nn.Parameter(base * scale)
        _run([p], [[grad]], ScaledAdam([p], lr=0.01))
        moves.append(p.detach() - base * scale)
    torch.testing.assert_close(moves[1], 10 * moves[0], rtol=1e-4, atol=1e-6)


def test_only_a_tensor_above_the_largest_rms_shrinks():
    """With zero gradients nothing moves a tensor but the bound on its RMS (3.0)."""
    large = torch.nn.Parameter(torch.full((4, 4), 5.0))
    normal = torch.nn.Parameter(torch.full((4, 4), 1.0))
    optimizer = ScaledAdam([large, normal], lr=0.05, size_update_period=2)
    _run([large, normal], [[torch.zeros(4, 4), torch.zeros(4, 4)] for _ in range(40)], optimizer)
    assert large.detach().max() < 4.5
    assert torch.equal(normal.detach(), torch.ones(4, 4))


def test_clipping_holds_a_spike_to_twice_the_median():
    p = torch.nn.Parameter(torch.ones(3, 3))
    optimizer = ScaledAdam([p], lr=0.01, clipping_period=3)
    grads = [[torch.full((3, 3), 1.0)] for _ in range(3)] + [[torch.full((3, 3), 100.0)]]
    _run([p], grads, optimizer)
    assert optimizer.clipped_steps == 1
    assert optimizer.last_grad_norm == pytest.approx(300.0)


def test_resume_from_state_dict_is_exact():
    params, grads = _problem(seed=2, steps=12)
    uninterrupted = [torch.nn.Parameter(x.clone()) for x in params]
    _run(uninterrupted, grads, ScaledAdam(uninterrupted, lr=0.05, clipping_period=5))

    resumed = [torch.nn.Parameter(x.clone()) for x in params]
    first = ScaledAdam(resumed, lr=0.05, clipping_period=5)
    _run(resumed, grads[:7], first)
    second = ScaledAdam(resumed, lr=0.05, clipping_period=5)
    second.load_state_dict(first.state_dict())
    _run(resumed, grads[7:], second)
    for a, b in zip(uninterrupted, resumed):
        assert torch.equal(a, b)


def test_built_from_the_config():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    optimizer, scheduler = build_optimizer(model, OptimConfig(name="scaled_adam", lr=0.045, warmup_batches=0))
    assert isinstance(optimizer, ScaledAdam) and scheduler.get_last_lr() == [0.045]
    with pytest.raises(ConfigError, match="optim.name: 'sgd' is not one of adamw, scaled_adam"):
        OptimConfig(name="sgd")
