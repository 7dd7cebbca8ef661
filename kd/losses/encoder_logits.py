"""CoDERT encoder-logit distillation (METHODS.md (b), Swaminathan et al. 2021).

Encoder logits are the joiner applied to the encoder output alone, e_t = W_o tanh(W_e h_t)
(Joiner.encoder_logits), (B, T, V) for teacher and student, and

    L_kd = sum over frames t < T_b of KL(softmax(e^T_t / tau) || softmax(e^S_t / tau)),

against the teacher's logits, or against its stored top-k + rest targets (over the k+1 buckets; equal to
the full KL when k = V). Returns the SUM over the valid frames (reduction="sum"; the caller divides by
frames) or the per-frame values (B, T), zero past each utterance (reduction="none"). The teacher is
detached here, which is also what the co-learning mode needs (teacher and student trained together, the
KD term moving only the student). scale_by_t2 multiplies the loss by tau ** 2 (off by default).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kd.losses.lattice import reduce_nodes
from kd.losses.topk import TopK, node_kl, t2_factor


def encoder_logit_kl(
    student_logits: Tensor,
    teacher: Tensor | TopK,
    frame_lens: Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """KL(teacher || student) of the encoder logits at every valid frame.

    Args:
        student_logits: (B, T, V) the student's encoder logits.
        teacher: logits (B, T, V), or TopK (B, T, k) made at `temperature` (topk_from_logits).
        frame_lens: (B,) T_b.
        temperature: divides the logits (a TopK teacher is already at its temperature).
        scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, T) per frame.
    """
    if student_logits.ndim != 3:
        raise ValueError(f"student_logits must be (B, T, V), got {tuple(student_logits.shape)}")
    B, T, V = student_logits.shape
    frames = teacher.rest.shape if isinstance(teacher, TopK) else teacher.shape[:-1]
    if tuple(frames) != (B, T) or (not isinstance(teacher, TopK) and teacher.shape[-1] != V):
        shape = tuple(teacher.logprobs.shape if isinstance(teacher, TopK) else teacher.shape)
        raise ValueError(
            f"teacher {shape} does not match the student's encoder logits {(B, T, V)}: expected (B, T, V) "
            "logits or a (B, T, k) TopK"
        )
    if frame_lens.shape != (B,) or bool((frame_lens > T).any()) or bool((frame_lens < 0).any()):
        raise ValueError(f"frame_lens must be ({B},) within [0, T={T}], got {frame_lens.tolist()}")
    frame = torch.arange(T, device=student_logits.device).view(1, T)
    valid = frame < frame_lens.to(student_logits.device).view(B, 1)
    kl = node_kl(teacher, student_logits, valid, temperature)
    return reduce_nodes(kl * t2_factor(temperature, scale_by_t2), valid, reduction)
