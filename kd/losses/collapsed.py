"""Collapsed y/blank distillation (METHODS.md (a), Panchapagesan et al. 2021).

At every lattice node (t, u) the output distribution is collapsed to three classes,
[P(blank | t, u), P(y_{u+1} | t, u), 1 - P(blank) - P(y_{u+1})], two on each utterance's last row u = U_b
(where no symbol is left: [P(blank), 1 - P(blank)]), and

    L_kd = sum over nodes of KL(teacher_3 || student_3).

The teacher is given as k2's px (B, U, T+1) or (B, U, T) and py (B, U+1, T) (see kd.losses.rnnt), the
form in which its targets are stored; the student as px/py, as a joiner over the full lattice (run in
chunks of frames), or as logits on the pruned lattice.

Conventions shared by the functions here:
    * boundary: int64 (B, 4) rows [0, 0, U_b, T_b]; the nodes are t < T_b, u <= U_b.
    * Returns the SUM over the valid nodes (reduction="sum"), or the per-node values, zero off the
      lattice (reduction="none"). Normalising (by frames or by nodes) is the caller's job.
    * The teacher is detached; fp16 px/py are accepted (the KL is computed in the student's dtype,
      promoted to >= float32). The teacher's three classes are renormalised, so rounding cannot make them
      sum past 1; a class the teacher gives no mass adds nothing.
    * temperature (logit students only) divides the student's logits; the teacher's px/py must come from
      its logits at the same temperature. scale_by_t2 multiplies the loss by temperature ** 2 (Hinton et
      al.'s gradient-scale correction; off by default, so the loss is the formula above).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from kd.losses.lattice import (
    full_node_mask,
    gather_pruned,
    lengths_from_boundary,
    pruned_node_mask,
    px_py_to_nodes,
    reduce_nodes,
)
from kd.losses.topk import t2_factor, topk_log_probs

NEG_INF = float("-inf")
# what padding nodes are set to before the KL, so that whatever they hold gives finite gradients
_PAD_LOGP = math.log(1.0 / 3.0)

Joiner = Callable[[Tensor, Tensor], Tensor]


def collapsed_kl_full(
    student_px: Tensor,
    student_py: Tensor,
    teacher_px: Tensor,
    teacher_py: Tensor,
    boundary: Tensor,
    reduction: str = "sum",
) -> Tensor:
    """Collapsed KL over every lattice node, from the student's px/py.

    Args:
        student_px: (B, U, T+1) or (B, U, T), k2's log P(y_{u+1} | t, u) (e.g. get_rnnt_logprobs_joint).
        student_py: (B, U+1, T), log P(blank | t, u).
        teacher_px, teacher_py: the teacher's, same layout (the T+1 / T variants may differ).
        boundary: int64 (B, 4) [0, 0, U_b, T_b].
        reduction: "sum" | "none".

    Returns:
        scalar, or (B, T, U+1) per node.
    """
    student_blank, student_symbol = px_py_to_nodes(student_px, student_py)
    teacher_blank, teacher_symbol = px_py_to_nodes(teacher_px, teacher_py)
    if student_blank.shape != teacher_blank.shape:
        raise ValueError(
            f"student lattice (B, T, U+1) = {tuple(student_blank.shape)} differs from the teacher's "
            f"{tuple(teacher_blank.shape)}"
        )
    B, T, U1 = student_blank.shape
    symbol_lens, frame_lens = lengths_from_boundary(boundary, B, T, U1 - 1)
    valid = full_node_mask(frame_lens, symbol_lens, T, U1 - 1)
    last_row = _rows(B, T, U1, student_blank.device) >= symbol_lens.view(B, 1, 1)
    student_symbol = student_symbol.masked_fill(last_row, NEG_INF)
    # px/py alone give the student's third class only as 1 - P(blank) - P(y); clamped below 1 so that its
    # log (and gradient) stays finite when the two round to all the mass
    student_both = torch.logaddexp(student_blank, student_symbol)
    student_both = student_both.clamp(max=-torch.finfo(student_both.dtype).tiny)
    student_rest = _log_one_minus_exp(student_both)
    kl = _collapsed_node_kl(
        (student_blank, student_symbol, student_rest),
        (teacher_blank, teacher_symbol.masked_fill(last_row, NEG_INF)),
        valid,
    )
    return reduce_nodes(kl, valid, reduction)


def collapsed_kl_full_chunked(
    joiner: Joiner,
    am: Tensor,
    lm: Tensor,
    symbols: Tensor,
    teacher_px: Tensor,
    teacher_py: Tensor,
    boundary: Tensor,
    chunk_frames: int,
    blank_id: int = 0,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """Collapsed KL over every lattice node, the student's joiner run on `chunk_frames` frames at a time.

    Each chunk is checkpointed: its (B, chunk_frames, U+1, V) logits exist only while that chunk's loss
    is computed, in the forward pass and again in the backward pass, so peak memory is a few buffers of one
    chunk's logits size whatever T is. The result equals the unchunked loss.

    Args:
        joiner: (am (B, t, 1, J), lm (B, 1, U+1, J)) -> logits (B, t, U+1, V) on projected inputs, e.g.
            functools.partial(model.joiner, project_input=False) (see Transducer.full_logits).
        am: (B, T, J) the encoder output projected by the joiner's encoder_proj.
        lm: (B, U+1, J) the decoder output projected by decoder_proj.
        symbols: int64 (B, U) transcripts, padded with anything in [0, V).
        teacher_px, teacher_py, boundary: as collapsed_kl_full.
        chunk_frames: >= 1 frames per joiner call.
        blank_id, temperature, scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, T, U+1) per node.
    """
    if am.ndim != 3 or lm.ndim != 3 or am.shape[0] != lm.shape[0] or am.shape[2] != lm.shape[2]:
        raise ValueError(f"am must be (B, T, J) and lm (B, U+1, J), got {tuple(am.shape)}, {tuple(lm.shape)}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    B, T, _ = am.shape
    U1 = lm.shape[1]
    teacher_blank, teacher_symbol = px_py_to_nodes(teacher_px, teacher_py)
    if teacher_blank.shape != (B, T, U1):
        raise ValueError(
            f"teacher lattice {tuple(teacher_blank.shape)} does not match am/lm's (B, T, U+1) = {(B, T, U1)}"
        )
    _check_symbols(symbols, B, U1 - 1)
    symbol_lens, frame_lens = lengths_from_boundary(boundary, B, T, U1 - 1)
    valid = full_node_mask(frame_lens, symbol_lens, T, U1 - 1)
    rows = _rows(B, T, U1, am.device)
    teacher_symbol = teacher_symbol.masked_fill(rows >= symbol_lens.view(B, 1, 1), NEG_INF)

    def chunk_kl(am_chunk: Tensor, lm_all: Tensor, t0: int) -> Tensor:
        t1 = t0 + am_chunk.shape[1]
        logits = joiner(am_chunk.unsqueeze(2), lm_all.unsqueeze(1))
        if logits.ndim != 4 or logits.shape[:3] != (B, t1 - t0, U1):
            raise ValueError(
                f"joiner gave {tuple(logits.shape)} for frames [{t0}, {t1}); expected (B, t, U+1, V) = "
                f"({B}, {t1 - t0}, {U1}, V)"
            )
        student = _student_from_logits(logits, rows[:, t0:t1], symbols, symbol_lens, blank_id, temperature)
        teacher = (teacher_blank[:, t0:t1], teacher_symbol[:, t0:t1])
        return _collapsed_node_kl(student, teacher, valid[:, t0:t1])

    chunks = []
    for t0 in range(0, T, chunk_frames):
        am_chunk = am[:, t0 : t0 + chunk_frames]
        if torch.is_grad_enabled():
            chunks.append(checkpoint(chunk_kl, am_chunk, lm, t0, use_reentrant=False))
        else:
            chunks.append(chunk_kl(am_chunk, lm, t0))
    kl = torch.cat(chunks, dim=1) if chunks else valid.new_zeros(valid.shape, dtype=torch.float32)
    return reduce_nodes(kl * t2_factor(temperature, scale_by_t2), valid, reduction)


def collapsed_kl_pruned(
    student_logits: Tensor,
    ranges: Tensor,
    symbols: Tensor,
    teacher_px: Tensor,
    teacher_py: Tensor,
    boundary: Tensor,
    blank_id: int = 0,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """Collapsed KL over the nodes inside the prune ranges.

    Args:
        student_logits: (B, T, S, V), the student's joiner at nodes (t, ranges[b, t, s]).
        ranges: int64 (B, T, S) (get_rnnt_prune_ranges; typically the student's own).
        symbols: int64 (B, U) transcripts, padded with anything in [0, V).
        teacher_px, teacher_py: over the full lattice, as collapsed_kl_full.
        boundary: int64 (B, 4) [0, 0, U_b, T_b].
        blank_id, temperature, scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, T, S) per pruned node (zero at the nodes outside the utterance).
    """
    if student_logits.ndim != 4 or ranges.shape != student_logits.shape[:3]:
        raise ValueError(
            f"student_logits must be (B, T, S, V) and ranges (B, T, S), got {tuple(student_logits.shape)} "
            f"and {tuple(ranges.shape)}"
        )
    if ranges.dtype != torch.int64:
        raise TypeError(f"ranges must be int64, got {ranges.dtype}")
    B, T, S, _ = student_logits.shape
    teacher_blank, teacher_symbol = px_py_to_nodes(teacher_px, teacher_py)
    if teacher_blank.shape[:2] != (B, T):
        raise ValueError(f"teacher lattice {tuple(teacher_blank.shape)} does not match (B, T) = {(B, T)}")
    U = teacher_blank.shape[2] - 1
    _check_symbols(symbols, B, U)
    symbol_lens, frame_lens = lengths_from_boundary(boundary, B, T, U)
    valid = pruned_node_mask(ranges, frame_lens, symbol_lens)
    teacher_blank = gather_pruned(teacher_blank, ranges)
    teacher_symbol = gather_pruned(teacher_symbol, ranges)
    teacher_symbol = teacher_symbol.masked_fill(ranges >= symbol_lens.view(B, 1, 1), NEG_INF)
    student = _student_from_logits(student_logits, ranges, symbols, symbol_lens, blank_id, temperature)
    kl = _collapsed_node_kl(student, (teacher_blank, teacher_symbol), valid)
    return reduce_nodes(kl * t2_factor(temperature, scale_by_t2), valid, reduction)


def _student_from_logits(
    logits: Tensor, rows: Tensor, symbols: Tensor, symbol_lens: Tensor, blank_id: int, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """log P(blank), log P(y_{u+1}) (-inf on rows u >= U_b) and the exact log-mass of every other class
    at each node of logits (B, T', N, V) whose rows (B, T', N) are `rows`."""
    B, U = symbols.shape
    V = logits.shape[-1]
    if not 0 <= blank_id < V:
        raise ValueError(f"blank_id={blank_id} is outside the vocabulary [0, {V})")
    last_row = rows >= symbol_lens.view(B, 1, 1)
    padded = torch.cat([symbols, symbols.new_full((B, 1), blank_id)], dim=1)
    next_symbol = torch.gather(padded.unsqueeze(1).expand(B, rows.shape[1], U + 1), 2, rows)
    # on the last row the blank stands in for the absent symbol, so the rest is everything but the blank
    next_symbol = next_symbol.masked_fill(last_row, blank_id)
    ids = torch.stack([torch.full_like(next_symbol, blank_id), next_symbol], dim=-1)
    logp, rest = topk_log_probs(logits, ids, temperature)
    blank, symbol = logp.unbind(-1)
    return blank, symbol.masked_fill(last_row, NEG_INF), rest


def _collapsed_node_kl(
    student: tuple[Tensor, Tensor, Tensor], teacher: tuple[Tensor, Tensor], valid: Tensor
) -> Tensor:
    """KL(teacher_3 || student_3) per node; student = log (P(blank), P(y), rest), teacher = log (P(blank),
    P(y)); symbol log-probs are already -inf on the last rows. Nodes off `valid` give 0 (and no gradient)."""
    invalid = ~valid.unsqueeze(-1)
    student_logp = torch.stack(student, dim=-1)
    dtype = torch.promote_types(student_logp.dtype, torch.float32)
    student_logp = student_logp.to(dtype).masked_fill(invalid, _PAD_LOGP)
    teacher_two = torch.stack(teacher, dim=-1).detach().to(dtype)
    both = torch.logsumexp(teacher_two, dim=-1, keepdim=True).clamp(max=0.0)
    teacher_logp = torch.cat([teacher_two, _log_one_minus_exp(both)], dim=-1).masked_fill(invalid, _PAD_LOGP)
    teacher_logp = torch.log_softmax(teacher_logp, dim=-1)
    q = teacher_logp.exp()
    empty = q == 0
    return (q * (teacher_logp.masked_fill(empty, 0.0) - student_logp.masked_fill(empty, 0.0))).sum(dim=-1)


def _log_one_minus_exp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate near both ends."""
    return torch.log(-torch.expm1(x))


def _rows(B: int, T: int, U1: int, device: torch.device) -> Tensor:
    return torch.arange(U1, device=device).view(1, 1, U1).expand(B, T, U1)


def _check_symbols(symbols: Tensor, B: int, U: int) -> None:
    if symbols.dtype != torch.int64 or symbols.shape != (B, U):
        raise ValueError(
            f"symbols must be int64 (B, U) = ({B}, {U}), got {symbols.dtype} {tuple(symbols.shape)}"
        )
