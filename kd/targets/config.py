"""What a target generation run computes: the target types, their fields and the settings they depend on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TARGET_TYPES = ("pruned", "pxpy", "one_best", "hyp", "enc_logits")
# Types defined on the lattice of a label sequence: the reference tokens, or for an unlabelled cut the
# teacher's best hypothesis (which is therefore searched whenever one of these is asked for).
LATTICE_TYPES = ("pruned", "pxpy", "one_best")

# The arrays stored per cut and type (the attached custom field is ``kd_<type>_<field>``). ``start`` is the
# first u of each frame's prune window: the ranges (T, S) are start[t] + 0..S-1, so only (T,) is stored.
STORED_FIELDS: dict[str, tuple[str, ...]] = {
    "pruned": ("start", "logprobs", "ids", "rest"),
    "pxpy": ("px", "py"),
    "one_best": ("nodes", "logprobs", "ids", "rest"),
    "enc_logits": ("logprobs", "ids", "rest"),
    "hyp": (),  # text and score live in the cut's JSON record (kd.targets.storage.META_FIELD)
}


@dataclass
class TargetConfig:
    """Settings of a generation run (recorded in the targets manifest).

    Attributes:
        types: the target types to compute, a subset of :data:`TARGET_TYPES`.
        topk: k, the teacher classes kept per lattice node or frame (the rest of the mass is one bucket).
        prune_range: s_range, the u values kept per frame of the pruned lattice.
        lm_scale, am_scale: smoothing of the teacher's simple loss that gives the prune ranges (use the
            teacher's training values so the ranges are the ones it was trained on).
        rnnt_type: lattice topology of the simple loss behind the prune ranges ("regular" | "modified").
        beam: beam of the modified beam search that gives hypotheses (``hyp``, and the lattice targets of
            unlabelled cuts).
        blank_penalty: subtracted from the blank logit in that search only (it shapes the hypotheses, e.g.
            against the deletions of LM fusion); the stored log-probs stay the teacher's own posteriors.
        max_sym_per_frame: symbols a hypothesis of that search may emit on one encoder frame (more than one
            for tokens that come faster than frames, e.g. letters).
    """

    types: list[str] = field(default_factory=lambda: list(TARGET_TYPES))
    topk: int = 8
    prune_range: int = 5
    lm_scale: float = 0.25
    am_scale: float = 0.0
    rnnt_type: str = "regular"
    beam: int = 4
    blank_penalty: float = 0.0
    max_sym_per_frame: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.types) - set(TARGET_TYPES))
        if unknown or not self.types:
            raise ValueError(
                f"target types {self.types} are not a non-empty subset of {list(TARGET_TYPES)} "
                f"(unknown: {unknown})"
            )
        if len(set(self.types)) != len(self.types):
            raise ValueError(f"target types {self.types} name a type twice")
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if self.prune_range < 2:
            raise ValueError(
                f"prune_range must be >= 2 (a regular lattice needs two rows), got {self.prune_range}"
            )
        if self.rnnt_type not in ("regular", "modified"):
            raise ValueError(f"rnnt_type must be 'regular' or 'modified', got {self.rnnt_type!r}")
        if self.beam < 1:
            raise ValueError(f"beam must be >= 1, got {self.beam}")
        if self.max_sym_per_frame < 1:
            raise ValueError(f"max_sym_per_frame must be >= 1, got {self.max_sym_per_frame}")
        if not math.isfinite(self.blank_penalty):
            raise ValueError(f"blank_penalty must be a finite number, got {self.blank_penalty}")
        # a canonical order, so that two runs asking for the same types in another order agree
        self.types = [t for t in TARGET_TYPES if t in self.types]

    @property
    def needs_tokens(self) -> bool:
        """Whether some type is defined on the lattice of a label sequence."""
        return any(t in LATTICE_TYPES for t in self.types)
