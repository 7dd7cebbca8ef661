"""RNN-T losses with k2's names, arguments and numbers: simple, smoothed, pruned and full.

Code written for k2 (`k2.rnnt_loss_pruned(logits=..., symbols=..., ...)`) runs unchanged against these.
Shapes (k2's letters): B batch, T frames, S symbols (the padded transcript length, U elsewhere in this
project), C vocabulary (V elsewhere), s_range the kept symbol positions per frame.

The lattice (see kd.losses.mutual_information) has nodes (s, t); px[b, s, t] = log P(symbols[b, s] | t, s)
and py[b, s, t] = log P(blank | t, s). Topologies (`rnnt_type`):
    "regular":     a symbol keeps the frame; px is (B, S, T+1), its column t_end is -inf so the last blank
                   ends the sequence.
    "modified":    a symbol also advances the frame (at most one symbol per frame); px is (B, S, T).
    "constrained": modified, and emitting a symbol also takes the blank of the next context on the same
                   frame: px += py[:, 1:, :].

Where this differs from k2 (k2 asserts in these cases):
    * an utterance with no symbols (s_end = 0) is allowed: its loss is -sum_t log P(blank | t, 0);
    * an utterance with fewer frames than symbols in the modified/constrained topologies has no path: its
      loss is +inf and its gradient zero (the trainer is expected to skip such a batch and count it).
Bad input raises a ValueError/TypeError naming the argument: labels outside [0, C), lengths beyond the
padded tensors, NaN/+inf in the logits, reduction None.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from kd.losses.lattice import log_softmax_at
from kd.losses.mutual_information import NEG_INF, check_boundary, mutual_information_recursion

logger = logging.getLogger(__name__)

RNNT_TYPES = ("regular", "modified", "constrained")
LossAndGrad = Tensor | tuple[Tensor, tuple[Tensor, Tensor]]


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """px, py of the "simple" joiner logits[b, t, s, :] = lm[b, s, :] + am[b, t, :], log-softmaxed over C.

    The (B, T, S+1, C) logits are never built: the normaliser is a (B, S+1, C) x (B, C, T) matmul of exps.

    Args:
        lm: (B, S+1, C) decoder ("language model") part; row s follows s emitted symbols.
        am: (B, T, C) encoder ("acoustic") part.
        symbols: int64 (B, S) labels in [0, C); positions past s_end are ignored.
        termination_symbol: the blank id.
        rnnt_type: "regular" | "modified" | "constrained".
        boundary: optional int64 (B, 4) [s_begin, t_begin, s_end, t_end] per row.

    Returns:
        px (B, S, T+1) for regular, (B, S, T) otherwise; py (B, S+1, T).
    """
    B, T, C = _check_simple(lm, am)
    S = lm.shape[1] - 1
    _check_symbols(symbols, B, S, C, termination_symbol)
    _check_rnnt_type(rnnt_type)
    boundary = check_boundary(boundary, B, S, T, am.device)
    normalizers = _simple_normalizers(lm, am)  # (B, S+1, T)
    px_am, py_am = _am_at_symbols(am, symbols, termination_symbol)
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # (B, S, 1)
    px = px_am + px_lm - normalizers[:, :S]
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)  # (B, S+1, 1)
    py = py_am + py_lm - normalizers
    return _to_topology(px, py, rnnt_type, boundary)


def rnnt_loss_simple(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str | None = "mean",
    return_grad: bool = False,
) -> LossAndGrad:
    """The RNN-T loss of the simple joiner lm + am (see get_rnnt_logprobs for the arguments).

    Args:
        delay_penalty: >= 0; adds delay_penalty * ((T_b - 1) / 2 - t) to px[b, :, t], rewarding early
            symbols (k2 issue 955). Computed in px's dtype (k2 rounds it to float32 first).
        reduction: "none" -> (B,) losses; "mean" -> their mean over the batch (not over frames); "sum".
        return_grad: also return (px_grad, py_grad), the arc occupation probabilities d(-loss_b)/d(px, py)
            summed over b, whatever the reduction: the input of get_rnnt_prune_ranges.

    Returns:
        loss, or (loss, (px_grad, py_grad)) if return_grad.
    """
    px, py = get_rnnt_logprobs(lm, am, symbols, termination_symbol, rnnt_type=rnnt_type, boundary=boundary)
    return _loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """px, py of the simple joiner, interpolated in the log domain with an LM-only and an AM-only model:

        (1 - lm_only_scale - am_only_scale) * joint + lm_only_scale * lm_only + am_only_scale * am_only

    where lm_only normalises lm alone and am_only pairs am with the batch-averaged ("unigram") lm
    distribution. Arguments and shapes as get_rnnt_logprobs.
    """
    B, T, C = _check_simple(lm, am)
    S = lm.shape[1] - 1
    _check_symbols(symbols, B, S, C, termination_symbol)
    _check_rnnt_type(rnnt_type)
    boundary = check_boundary(boundary, B, S, T, am.device)
    tiny = torch.finfo(lm.dtype).tiny
    # shifts that keep exp() in range; their gradients cancel exactly, so they are detached
    am_max = am.detach().amax(dim=2, keepdim=True)  # (B, T, 1)
    lm_max = lm.detach().amax(dim=2, keepdim=True)  # (B, S+1, 1)
    am_probs = (am - am_max).exp()
    lm_probs = (lm - lm_max).exp()
    normalizers = (lm_probs @ am_probs.transpose(1, 2) + tiny).log() + lm_max + am_max.transpose(1, 2)
    lm_sums = lm_probs.sum(dim=2, keepdim=True)  # (B, S+1, 1)
    unigram = (lm_probs / lm_sums).mean(dim=(0, 1)) + tiny  # (C,)
    am_only_normalizers = ((am_probs @ unigram).log().unsqueeze(2) + am_max).transpose(1, 2)  # (B, 1, T)
    log_unigram = unigram.log()
    lm_only_normalizers = lm_sums.log() + lm_max  # (B, S+1, 1)

    px_am, py_am = _am_at_symbols(am, symbols, termination_symbol)
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # (B, S, 1)
    px_joint = px_am + px_lm - normalizers[:, :S]
    px_am_only = px_am + log_unigram[symbols].unsqueeze(2) - am_only_normalizers
    px_lm_only = px_lm - lm_only_normalizers[:, :S]
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)  # (B, S+1, 1)
    py_joint = py_am + py_lm - normalizers
    py_am_only = py_am + log_unigram[termination_symbol] - am_only_normalizers
    py_lm_only = py_lm - lm_only_normalizers

    joint_scale = 1.0 - lm_only_scale - am_only_scale
    # an exact zero scale would turn a -inf log-prob into NaN
    lm_only_scale = lm_only_scale or 1e-20
    am_only_scale = am_only_scale or 1e-20
    px = px_joint * joint_scale + px_lm_only * lm_only_scale + px_am_only * am_only_scale
    py = py_joint * joint_scale + py_lm_only * lm_only_scale + py_am_only * am_only_scale
    return _to_topology(px, py, rnnt_type, boundary)


def rnnt_loss_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str | None = "mean",
    return_grad: bool = False,
) -> LossAndGrad:
    """rnnt_loss_simple on the smoothed px, py of get_rnnt_logprobs_smoothed (icefall: lm_only_scale 0.25,
    am_only_scale 0.0). Arguments and return value as rnnt_loss_simple."""
    px, py = get_rnnt_logprobs_smoothed(
        lm,
        am,
        symbols,
        termination_symbol,
        lm_only_scale,
        am_only_scale,
        boundary=boundary,
        rnnt_type=rnnt_type,
    )
    return _loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def get_rnnt_logprobs_joint(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """px, py of a full joiner output.

    Args:
        logits: (B, T, S+1, C) unnormalised joiner output (T before S); log-softmaxed over C here.
        symbols, termination_symbol, rnnt_type, boundary: as get_rnnt_logprobs.

    Returns:
        px (B, S, T+1) for regular, (B, S, T) otherwise; py (B, S+1, T).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, S+1, C), got {tuple(logits.shape)}")
    B, T, S1, C = logits.shape
    S = S1 - 1
    _check_symbols(symbols, B, S, C, termination_symbol)
    _check_rnnt_type(rnnt_type)
    boundary = check_boundary(boundary, B, S, T, logits.device)
    # classes wanted at node (t, s): the next symbol (none on row S: the blank stands in) and the blank
    padded_symbols = torch.cat([symbols, symbols.new_full((B, 1), termination_symbol)], dim=1)
    index = torch.stack([padded_symbols, torch.full_like(padded_symbols, termination_symbol)], dim=2)
    logp = log_softmax_at(logits, index.unsqueeze(1).expand(B, T, S + 1, 2))  # (B, T, S+1, 2)
    px = logp[:, :, :S, 0].transpose(1, 2)
    py = logp[:, :, :, 1].transpose(1, 2)
    return _to_topology(px, py, rnnt_type, boundary)


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str | None = "mean",
) -> Tensor:
    """The full (unpruned) RNN-T loss of logits (B, T, S+1, C); see get_rnnt_logprobs_joint and
    rnnt_loss_simple for the arguments."""
    px, py = get_rnnt_logprobs_joint(
        logits, symbols, termination_symbol, rnnt_type=rnnt_type, boundary=boundary
    )
    return _loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad=False)


def get_rnnt_prune_ranges(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int) -> Tensor:
    """The s_range consecutive symbol positions kept on each frame (Kuang et al. 2022, section 3.2).

    For every frame the window start maximises the occupation mass of blank arcs inside the window minus
    the symbol arcs entering it from below; the starts are then made non-decreasing, start at 0, step by
    less than s_range (by at most 1 for modified/constrained), and reach s_end - s_range + 1 on the last
    frame.

    Args:
        px_grad: (B, S, T+1) (regular) or (B, S, T) (modified/constrained): occupations from
            rnnt_loss_simple/smoothed(return_grad=True); the shape tells the topology.
        py_grad: (B, S+1, T).
        boundary: int64 (B, 4) [s_begin, t_begin, s_end, t_end] (required, as in k2).
        s_range: positions per frame. As in k2 it is raised to the regular topology's minimum
            max_b((s_end - 1) // t_end + 2) and lowered to S+1 if larger (with a logged warning for the
            former), so ranges.shape[2] may differ from the value asked for.

    Returns:
        ranges, int64 (B, T, s_range): ranges[b, t, k] = ranges[b, t, 0] + k, all within [0, S].
    """
    if px_grad.ndim != 3 or py_grad.ndim != 3:
        raise ValueError(
            f"px_grad/py_grad must be 3-D, got {tuple(px_grad.shape)} and {tuple(py_grad.shape)}"
        )
    B, S, T1 = px_grad.shape
    T = py_grad.shape[2]
    if py_grad.shape != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(
            f"px_grad {tuple(px_grad.shape)} and py_grad {tuple(py_grad.shape)} do not form a lattice"
        )
    regular = T1 == T + 1
    boundary = check_boundary(boundary, B, S, T, py_grad.device)
    s_end, t_end = boundary[:, 2], boundary[:, 3]
    if regular:
        # a regular path must be able to climb s_end symbols within t_end frames, s_range - 1 per frame
        has_frames = t_end > 0
        if bool(has_frames.any()):
            needed = int(((s_end[has_frames] - 1).div(t_end[has_frames], rounding_mode="trunc") + 2).max())
            if s_range < needed:
                logger.warning(
                    "get_rnnt_prune_ranges: s_range=%d is too small here; using %d", s_range, needed
                )
                s_range = needed
    s_range = min(s_range, S + 1)
    if s_range < (2 if regular and S > 0 else 1):
        raise ValueError(f"s_range={s_range} leaves no path: need >= 2 for regular RNN-T, >= 1 otherwise")

    windows = S + 2 - s_range
    # (B, windows, s_range, T) strided view: window w covers rows w .. w+s_range-1 of py_grad
    b_stride, s_stride, t_stride = py_grad.stride()
    blank_mass = py_grad.as_strided((B, windows, s_range, T), (b_stride, s_stride, s_stride, t_stride)).sum(
        dim=2
    )
    entering = torch.cat([px_grad.new_zeros(B, 1, T1), px_grad], dim=1)[:, :windows, :T]
    s_begin = (blank_mass - entering).argmax(dim=1)  # (B, T)
    # the last real frame and the padding frames must end the window on the last symbol
    frame = torch.arange(T, device=py_grad.device).view(1, T)
    last_start = (s_end - s_range + 1).clamp(min=0).view(B, 1)
    s_begin = torch.where(frame < t_end.view(B, 1) - 1, s_begin, last_start)
    s_begin = _constrain_starts(s_begin, max_step=s_range - 1 if regular else 1)
    return s_begin.unsqueeze(2) + torch.arange(s_range, device=py_grad.device)


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
    """The joiner inputs at the kept positions. NB: am first, as in k2.

    Args:
        am: (B, T, D1) encoder side; lm: (B, S+1, D2) decoder side; ranges: int64 (B, T, s_range).

    Returns:
        am_pruned (B, T, s_range, D1) (an expanded view of am) and lm_pruned (B, T, s_range, D2) with
        lm_pruned[b, t, k] = lm[b, ranges[b, t, k]].
    """
    B, T, s_range = _check_ranges(ranges, am.shape[0], am.shape[1], lm.shape[1] - 1)
    if lm.shape[0] != B:
        raise ValueError(f"am has batch {B} but lm has {lm.shape[0]}")
    D2 = lm.shape[2]
    am_pruned = am.unsqueeze(2).expand(B, T, s_range, am.shape[2])
    index = ranges.reshape(B, T * s_range, 1).expand(B, T * s_range, D2)
    lm_pruned = torch.gather(lm, 1, index).view(B, T, s_range, D2)
    return am_pruned, lm_pruned


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """px, py of a pruned joiner output; arcs outside the kept positions are -inf.

    Args:
        logits: (B, T, s_range, C), logits[b, t, k] at symbol position ranges[b, t, k].
        symbols: int64 (B, S); ranges: int64 (B, T, s_range) from get_rnnt_prune_ranges.
        termination_symbol, boundary, rnnt_type: as get_rnnt_logprobs.

    Returns:
        px (B, S, T+1) for regular, (B, S, T) otherwise; py (B, S+1, T).
    """
    return _pruned_logprobs(
        logits, symbols, ranges, termination_symbol, boundary, rnnt_type, use_hat_loss=False
    )


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str | None = "mean",
    use_hat_loss: bool = False,
    return_grad: bool = False,
) -> LossAndGrad:
    """The RNN-T loss on the pruned lattice (see get_rnnt_logprobs_pruned and rnnt_loss_simple).

    Args:
        use_hat_loss: the HAT factorisation (Variani et al. 2020): log P(blank) = logsigmoid(z_blank),
            log P(k) = logsigmoid(-z_blank) + log_softmax over the non-blank logits (k2's option).
        return_grad: as rnnt_loss_simple (fast_rnnt's extension).
    """
    px, py = _pruned_logprobs(logits, symbols, ranges, termination_symbol, boundary, rnnt_type, use_hat_loss)
    return _loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def _pruned_logprobs(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None,
    rnnt_type: str,
    use_hat_loss: bool,
) -> tuple[Tensor, Tensor]:
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, s_range, C), got {tuple(logits.shape)}")
    B, T, s_range, C = logits.shape
    if symbols.ndim != 2:
        raise ValueError(f"symbols must be (B, S), got {tuple(symbols.shape)}")
    S = symbols.shape[1]
    _check_symbols(symbols, B, S, C, termination_symbol)
    _check_rnnt_type(rnnt_type)
    if _check_ranges(ranges, B, T, S) != (B, T, s_range):
        raise ValueError(f"ranges {tuple(ranges.shape)} does not match logits {tuple(logits.shape)}")
    boundary = check_boundary(boundary, B, S, T, logits.device)
    # the symbol at position S (after the last one) is never emitted; the blank stands in for it
    padded_symbols = torch.cat([symbols, symbols.new_full((B, 1), termination_symbol)], dim=1)
    kept_symbols = torch.gather(padded_symbols, 1, ranges.reshape(B, T * s_range)).view(B, T, s_range, 1)
    if not use_hat_loss:
        index = torch.cat([kept_symbols, torch.full_like(kept_symbols, termination_symbol)], dim=3)
        px_kept, py_kept = log_softmax_at(logits, index).unbind(3)  # (B, T, s_range) each
    else:
        blank_logits = logits[:, :, :, termination_symbol]
        blank = torch.tensor([termination_symbol], device=logits.device)
        non_blank_normalizers = torch.logsumexp(logits.index_fill(3, blank, NEG_INF), dim=3)
        px_kept = (
            torch.gather(logits, 3, kept_symbols).squeeze(3)
            - non_blank_normalizers
            + torch.nn.functional.logsigmoid(-blank_logits)
        )
        py_kept = torch.nn.functional.logsigmoid(blank_logits)
    unkept = logits.new_full((B, T, S + 1), NEG_INF)
    px = unkept.scatter(2, ranges, px_kept)[:, :, :S].transpose(1, 2)  # (B, S, T)
    py = unkept.scatter(2, ranges, py_kept).transpose(1, 2)  # (B, S+1, T)
    return _to_topology(px, py, rnnt_type, boundary)


def _loss(
    px: Tensor,
    py: Tensor,
    boundary: Tensor | None,
    rnnt_type: str,
    delay_penalty: float,
    reduction: str | None,
    return_grad: bool,
) -> LossAndGrad:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction should be 'none', 'mean' or 'sum', got {reduction!r}")
    if delay_penalty > 0.0:
        px = px + _delay_penalty(px, boundary, rnnt_type, delay_penalty)
    out = mutual_information_recursion(px=px, py=py, boundary=boundary, return_grad=return_grad)
    scores = out[0] if return_grad else out
    if reduction == "none":
        loss = -scores
    elif reduction == "mean":
        loss = -scores.mean()
    else:
        loss = -scores.sum()
    return (loss, out[1]) if return_grad else loss


def _delay_penalty(px: Tensor, boundary: Tensor | None, rnnt_type: str, delay_penalty: float) -> Tensor:
    """(B, 1, T0) delay_penalty * ((T_b - 1) / 2 - t): favours emitting symbols early."""
    B, _, T0 = px.shape
    T = T0 - 1 if rnnt_type == "regular" else T0
    frames = (
        boundary[:, 3].to(device=px.device, dtype=px.dtype) if boundary is not None else px.new_full((B,), T)
    )
    centre = (frames - 1) / 2
    t = torch.arange(T0, device=px.device, dtype=px.dtype)
    return ((centre.view(B, 1) - t.view(1, T0)) * delay_penalty).unsqueeze(1)


def _to_topology(px: Tensor, py: Tensor, rnnt_type: str, boundary: Tensor) -> tuple[Tensor, Tensor]:
    """px (B, S, T) -> the topology's px: regular appends the frame T+1 (where no symbol may be emitted)
    and blocks symbols on each sequence's frame t_end; constrained adds the next context's blank."""
    if rnnt_type == "regular":
        B, S, T = px.shape
        px = torch.cat([px, px.new_full((B, S, 1), NEG_INF)], dim=2)
        end_frame = torch.arange(T + 1, device=px.device).view(1, 1, T + 1) == boundary[:, 3].view(B, 1, 1)
        px = px.masked_fill(end_frame, NEG_INF)
    elif rnnt_type == "constrained":
        px = px + py[:, 1:, :]
    return px, py


def _am_at_symbols(am: Tensor, symbols: Tensor, termination_symbol: int) -> tuple[Tensor, Tensor]:
    """am at each position's symbol, (B, S, T), and at the blank, (B, 1, T): one gather, so that the
    backward pass builds one am-sized gradient for both."""
    B, T, _ = am.shape
    S = symbols.shape[1]
    index = torch.cat([symbols, symbols.new_full((B, 1), termination_symbol)], dim=1)
    at = torch.gather(am.transpose(1, 2), 1, index.unsqueeze(2).expand(B, S + 1, T))
    return at[:, :S], at[:, S:]


def _simple_normalizers(lm: Tensor, am: Tensor) -> Tensor:
    """(B, S+1, T) log sum_c exp(lm[b, s, c] + am[b, t, c]), via a matmul of max-shifted exps."""
    # the shifts only keep exp() in range; detached, as their gradients cancel exactly
    am_max = am.detach().amax(dim=2, keepdim=True)
    lm_max = lm.detach().amax(dim=2, keepdim=True)
    products = (lm - lm_max).exp() @ (am - am_max).exp().transpose(1, 2)
    return (products + torch.finfo(am.dtype).tiny).log() + lm_max + am_max.transpose(1, 2)


def _constrain_starts(s_begin: Tensor, max_step: int) -> Tensor:
    """Smallest raise of the window starts (B, T) that makes them non-decreasing in t, step by at most
    max_step, and start at 0 on frame 0 (so no symbol position is ever skipped)."""
    s_begin = _running_min_from_right(s_begin)
    # s[t+1] - s[t] <= max_step  <=>  max_step * t - s[t] is non-decreasing; clamping that at 0 makes
    # s[t] <= max_step * t, so s[0] = 0
    t = torch.arange(s_begin.shape[1], device=s_begin.device).view(1, -1)
    slack = _running_min_from_right(max_step * t - s_begin).clamp(min=0)
    return max_step * t - slack


def _running_min_from_right(x: Tensor) -> Tensor:
    """out[..., i] = min(x[..., i:]): the largest non-decreasing sequence below x."""
    return x.flip(-1).cummin(dim=-1).values.flip(-1)


def _check_simple(lm: Tensor, am: Tensor) -> tuple[int, int, int]:
    if lm.ndim != 3 or am.ndim != 3 or lm.shape[0] != am.shape[0] or lm.shape[2] != am.shape[2]:
        raise ValueError(
            f"lm must be (B, S+1, C) and am (B, T, C), got {tuple(lm.shape)} and {tuple(am.shape)}"
        )
    if lm.dtype != am.dtype:
        raise ValueError(f"lm and am must share one dtype, got {lm.dtype} and {am.dtype}")
    return am.shape


def _check_symbols(symbols: Tensor, B: int, S: int, C: int, termination_symbol: int) -> None:
    if symbols.dtype != torch.int64:
        raise TypeError(f"symbols must be int64 (torch.long), got {symbols.dtype}: use .long()")
    if symbols.shape != (B, S):
        raise ValueError(f"symbols must be (B, S) = ({B}, {S}), got {tuple(symbols.shape)}")
    if not 0 <= termination_symbol < C:
        raise ValueError(f"termination_symbol={termination_symbol} is outside the vocabulary [0, {C})")
    if symbols.numel() and bool(((symbols < 0) | (symbols >= C)).any()):
        raise ValueError(
            f"symbols contain labels outside the vocabulary [0, {C}) (min {int(symbols.min())}, max "
            f"{int(symbols.max())}): pad transcripts with the blank id, not -1, and check that the tokenizer "
            "matches the model's vocabulary size"
        )


def _check_rnnt_type(rnnt_type: str) -> None:
    if rnnt_type not in RNNT_TYPES:
        raise ValueError(f"rnnt_type must be one of {', '.join(RNNT_TYPES)}, got {rnnt_type!r}")


def _check_ranges(ranges: Tensor, B: int, T: int, S: int) -> tuple[int, int, int]:
    if ranges.dtype != torch.int64 or ranges.ndim != 3 or ranges.shape[:2] != (B, T):
        raise ValueError(
            f"ranges must be int64 (B={B}, T={T}, s_range), got {ranges.dtype} {tuple(ranges.shape)}"
        )
    if ranges.numel() and bool(((ranges < 0) | (ranges > S)).any()):
        raise ValueError(
            f"ranges must lie in [0, S={S}], got values in [{int(ranges.min())}, {int(ranges.max())}]"
        )
    return tuple(ranges.shape)
