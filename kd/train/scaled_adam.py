"""ScaledAdam: Adam whose steps are relative to each tensor's size (Yao et al. 2023, Zipformer, section 4.1).

Adam moves every element by about ``lr`` whatever the tensor's scale, so a tensor with small entries
changes a lot in relative terms and one with large entries hardly at all. ScaledAdam multiplies the step
of a tensor by its root-mean-square (RMS), so ``lr`` is the relative change per step, and learns each
tensor's overall scale with an update of its own (the gradient of the loss with respect to a scalar
factor on the tensor, ``sum(p * grad)``, normalised Adam-like and applied every ``size_update_period``
steps). The scale is kept within ``[param_min_rms, param_max_rms]``, which replaces weight decay.
One-element tensors take plain Adam steps of ``lr * scalar_lr_scale``, clamped to ``±scalar_max``.

Gradients are clipped against their own history: when the norm of the gradient, each tensor's scaled by
its RMS (the norm of the relative change it asks for), exceeds ``clipping_scale`` times the median of
the last ``clipping_period`` norms, the gradients are scaled down to that threshold. A fixed global norm
cannot do that, as the gradient norm of a transducer falls by orders of magnitude while it trains.

Momentum is on the update (``delta``), as in the paper, so the scale update rides the same momentum.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

import torch


class ScaledAdam(torch.optim.Optimizer):
    """ScaledAdam for one parameter group (the learning rate comes from a scheduler).

    Args:
        params: the parameters.
        lr: the relative change per step of a tensor (e.g. 0.045).
        betas: momentum of the update and decay of the squared-gradient average.
        eps: added to the square root of the squared-gradient average.
        scalar_lr_scale: learning-rate factor for one-element tensors and for the scale update.
        param_min_rms, param_max_rms: the bounds of a tensor's RMS that its step uses and its scale keeps.
        scalar_max: bound of one-element tensors' absolute values.
        size_update_period: steps between scale updates.
        clipping_scale: clip above this times the median recent gradient norm (0 disables clipping).
        clipping_period: how many recent gradient norms the median is taken over.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 0.045,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        scalar_lr_scale: float = 0.1,
        param_min_rms: float = 1e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_scale: float = 2.0,
        clipping_period: int = 100,
    ) -> None:
        if lr <= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or size_update_period < 1:
            raise ValueError(
                f"ScaledAdam: bad lr={lr}, betas={betas} or size_update_period={size_update_period}"
            )
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            scalar_lr_scale=scalar_lr_scale,
            param_min_rms=param_min_rms,
            param_max_rms=param_max_rms,
            scalar_max=scalar_max,
            size_update_period=size_update_period,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("ScaledAdam takes one parameter group")
        self.clipping_scale = clipping_scale
        self.clipping_period = clipping_period
        self.step_count = 0
        self.recent_norms: list[float] = []
        self.threshold = math.inf
        self.clipped_steps = 0
        self.last_grad_norm = 0.0

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("ScaledAdam does not take a closure")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if not self.state[p]:
                self._init_state(p, group)
        tensors = [p for p in params if p.numel() > 1]
        scalars = [p for p in params if p.numel() == 1]
        self._clip(
            [p.grad for p in tensors],
            [self.state[p]["param_rms"] for p in tensors],
            [p.grad for p in scalars],
        )
        if tensors:
            self._step_tensors(tensors, group)
        if scalars:
            self._step_scalars(scalars, group)
        self.step_count += 1

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if p.grad.is_sparse:
            raise ValueError("ScaledAdam does not support sparse gradients")
        state = self.state[p]
        state["delta"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if p.numel() > 1:
            state["param_rms"] = _rms(p)
            state["scale_grads"] = torch.zeros(
                group["size_update_period"], dtype=torch.float32, device=p.device
            )
            state["scale_exp_avg_sq"] = torch.zeros((), dtype=torch.float32, device=p.device)

    def _clip(self, grads: list[torch.Tensor], rms: list[float], scalar_grads: list[torch.Tensor]) -> None:
        """Scale all gradients down when their RMS-weighted norm is far above its recent median."""
        sumsq = torch.zeros((), dtype=torch.float64)
        if grads:
            norms = torch._foreach_norm(grads)
            sumsq = sumsq + sum((n.double() * r) ** 2 for n, r in zip(norms, rms))
        for g in scalar_grads:
            sumsq = sumsq + g.double().square().sum()
        norm = math.sqrt(float(sumsq))
        self.last_grad_norm = norm
        if self.clipping_scale <= 0 or not math.isfinite(norm):
            return
        self.recent_norms = (self.recent_norms + [norm])[-self.clipping_period :]
        if self.step_count % self.clipping_period == 0:
            self.threshold = self.clipping_scale * statistics.median(self.recent_norms)
        if norm > self.threshold:
            self.clipped_steps += 1
            torch._foreach_mul_(grads + scalar_grads, self.threshold / norm)

    def _step_tensors(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        period = group["size_update_period"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        deltas = [s["delta"] for s in states]
        slot = self.step_count % period
        for p, s in zip(params, states):
            s["scale_grads"][slot] = (p * p.grad).sum()
        if slot == period - 1:
            for p, s in zip(params, states):
                s["param_rms"] = _rms(p)
                if self.step_count >= period:
                    self._size_update(p, s, group)
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        # g / (sqrt(v / c) + eps) = sqrt(c) * g / (sqrt(v) + eps * sqrt(c)): no pass over v for the bias
        # correction c (the optimiser's step is memory-bound on the CPU, a few passes over every parameter).
        root_c = math.sqrt(1 - beta2 ** (self.step_count + 1))
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_add_(denom, group["eps"] * root_c)
        step_sizes = [
            -group["lr"] * (1 - beta1) * root_c * max(s["param_rms"], group["param_min_rms"]) for s in states
        ]
        torch._foreach_mul_(deltas, beta1)
        torch._foreach_addcdiv_(deltas, grads, denom, step_sizes)
        torch._foreach_add_(params, deltas)

    def _size_update(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Move ``p``'s scale by the Adam-normalised sum of the last period's scale gradients."""
        beta1, beta2 = group["betas"]
        period = group["size_update_period"]
        size_lr = group["lr"] * group["scalar_lr_scale"]
        beta2_period = beta2**period
        scale_grads = state["scale_grads"]
        state["scale_exp_avg_sq"].mul_(beta2_period).add_(scale_grads.square().mean(), alpha=1 - beta2_period)
        updates_so_far = self.step_count // period
        bias_correction = 1 - beta2_period**updates_so_far
        denom = (state["scale_exp_avg_sq"] / bias_correction).sqrt() + group["eps"]
        if state["param_rms"] < group["param_min_rms"]:
            scale_step = size_lr * period
        elif state["param_rms"] > group["param_max_rms"]:
            scale_step = -size_lr * period
        else:
            scale_step = float(-size_lr * scale_grads.sum() / denom)
        state["delta"].add_(p, alpha=(1 - beta1) * scale_step)

    def _step_scalars(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        bias_correction = 1 - beta2 ** (self.step_count + 1)
        for p in params:
            s = self.state[p]
            s["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (s["exp_avg_sq"] / bias_correction).sqrt() + group["eps"]
            step = -group["lr"] * group["scalar_lr_scale"] * (1 - beta1)
            s["delta"].mul_(beta1).addcdiv_(p.grad, denom, value=step)
            p.add_(s["delta"]).clamp_(-group["scalar_max"], group["scalar_max"])

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["scaled_adam"] = {
            "step_count": self.step_count,
            "recent_norms": list(self.recent_norms),
            "threshold": self.threshold,
            "clipped_steps": self.clipped_steps,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        own = state_dict.pop("scaled_adam")
        super().load_state_dict(state_dict)
        self.step_count = own["step_count"]
        self.recent_norms = list(own["recent_norms"])
        self.threshold = own["threshold"]
        self.clipped_steps = own["clipped_steps"]


def _rms(p: torch.Tensor) -> float:
    return float(p.detach().float().square().mean().sqrt())
