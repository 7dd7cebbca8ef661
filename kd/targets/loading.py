"""Delivering a batch's targets: read the arrays attached to its cuts, check them, pad and stack them.

``TargetLoader.collate(cuts, feature_lens)`` returns (B utterances in batch order; T, U, N the batch's
largest frame, label and path counts; S = s_range; k = min(top-k, vocabulary)):

    frames       (B,) int64 teacher encoder frames (= the student's, checked)
    tokens       B lists of token ids: the labels the lattice targets are defined on. For a labelled cut
                 its reference (checked against the student's tokenizer), for an unlabelled one the
                 teacher's hypothesis: a KD objective trains the student's lattice on these.
    token_lens   (B,) int64
    pruned       ranges (B, T, S) int64 (past an utterance's frames: its last frame's window),
                 logprobs (B, T, S, k) float32, ids (B, T, S, k) int64, rest (B, T, S) float32
    pxpy         px (B, U, T+1), py (B, U+1, T) float32 (k2's layout; px[b, :, T_b] is -inf)
    one_best     nodes (B, N, 2) int64 (t, u), lengths (B,) int64, logprobs (B, N, k), ids (B, N, k),
                 rest (B, N); shifted right by ``one_best_shift`` frames (kd.losses.one_best.shift_path)
    enc_logits   logprobs (B, T, k), ids (B, T, k), rest (B, T)
    hyp          texts (B strings, "" where none), scores (B,) float32 (NaN where none): the teacher's best
                 hypothesis and its beam-search log-probability, for confidence filtering

Padding is zeros except where stated; mask with the lengths (kd.losses.pruned_node_mask and friends).
Float targets are stored fp16 and delivered as float32, exactly. ``TargetLoader.texts(cuts)`` gives the
transcripts, with the teacher's hypothesis for unlabelled cuts when ``hyp_transcripts`` (hard targets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from lhotse import CutSet
from torch import Tensor

from kd.data.dataset import cut_text
from kd.data.tokenizer import Tokenizer
from kd.losses.one_best import shift_path
from kd.models.subsampling import subsampled_lengths
from kd.targets.compute import CutTargets
from kd.targets.config import STORED_FIELDS, TARGET_TYPES
from kd.targets.manifest import TargetsManifest, TeacherInfo, tokenizer_info
from kd.targets.storage import cut_meta, is_unlabelled, load_arrays
from kd.targets.validation import TargetsError, check_cut, check_manifest, check_shape


class TargetLoader:
    """Loads, checks and collates the targets attached to a batch's cuts (see the module docstring).

    Args:
        manifest: the targets manifest of the cuts (``load_manifest(manifest_for_cuts(path))``).
        tokenizer: the student's tokenizer; it must be the teacher's BPE model (compared by content).
        types: the types to deliver (default: all the manifest holds).
        teacher: when given, targets from any other teacher are refused.
        one_best_shift: frames by which the one-best paths move right (streaming students).
        hyp_transcripts: ``texts`` gives unlabelled cuts the teacher's hypothesis as their transcript.

    Raises:
        TargetsError: another tokenizer or teacher, or types the manifest does not hold.
    """

    def __init__(
        self,
        manifest: TargetsManifest,
        tokenizer: Tokenizer,
        types: Sequence[str] | None = None,
        teacher: TeacherInfo | None = None,
        one_best_shift: int = 0,
        hyp_transcripts: bool = False,
    ) -> None:
        check_manifest(
            manifest, tokenizer_info(tokenizer), teacher, where=f"the targets of {manifest.source_cuts}"
        )
        self.types = list(manifest.config.types if types is None else types)
        missing = [t for t in self.types if t not in manifest.config.types]
        if missing or any(t not in TARGET_TYPES for t in self.types):
            raise TargetsError(
                f"targets {self.types} asked for, but the targets of {manifest.source_cuts} hold "
                f"{manifest.config.types}; generate the missing ones ({missing}) with --types"
            )
        if one_best_shift < 0:
            raise ValueError(f"one_best_shift must be >= 0 frames, got {one_best_shift}")
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.one_best_shift = one_best_shift
        self.hyp_transcripts = hyp_transcripts

    def texts(self, cuts: CutSet) -> list[str]:
        """The transcript of each cut; for an unlabelled cut its teacher hypothesis when
        ``hyp_transcripts`` (else "")."""
        out = []
        for cut in cuts:
            hyp = cut_meta(cut).get("hyp") if is_unlabelled(cut) and self.hyp_transcripts else None
            out.append(hyp["text"] if hyp else cut_text(cut))
        return out

    def collate(self, cuts: CutSet, feature_lens: Tensor) -> dict:
        """The batch's targets (see the module docstring).

        Args:
            cuts: the batch's cuts, in batch order. feature_lens: (B,) their feature frames.

        Raises:
            TargetsError: a cut whose targets do not match it (frames, tokens), the manifest's teacher, or
            the recorded shapes.
        """
        cuts = list(cuts)
        frames = subsampled_lengths(feature_lens.cpu().long()).tolist()
        metas = [cut_meta(c) for c in cuts]
        references = self.tokenizer.encode([cut_text(c) for c in cuts])
        for cut, meta, n, ref in zip(cuts, metas, frames, references):
            check_cut(cut.id, meta, self.manifest.teacher, n, None if is_unlabelled(cut) else ref)
        tokens = [list(m["tokens"]) for m in metas]
        arrays: dict[str, list[dict[str, np.ndarray]]] = {}
        for target_type in self.types:
            if STORED_FIELDS[target_type]:
                arrays[target_type] = [load_arrays(c, target_type) for c in cuts]
                for cut, stored, n, y in zip(cuts, arrays[target_type], frames, tokens):
                    self._check_shapes(cut.id, target_type, stored, n, len(y))
        hyps = [m.get("hyp") for m in metas] if "hyp" in self.types else None
        return collate_targets(arrays, frames, tokens, hyps, self.one_best_shift)

    def _check_shapes(self, cut_id: str, target_type: str, stored: dict, T: int, U: int) -> None:
        S = self.manifest.config.prune_range
        k = min(self.manifest.config.topk, self.manifest.tokenizer.vocab_size)
        N = stored["nodes"].shape[0] if target_type == "one_best" else 0
        expected = {
            "pruned": {"start": (T,), "logprobs": (T, S, k), "ids": (T, S, k), "rest": (T, S)},
            "pxpy": {"px": (U, T + 1), "py": (U + 1, T)},
            "one_best": {"nodes": (N, 2), "logprobs": (N, k), "ids": (N, k), "rest": (N,)},
            "enc_logits": {"logprobs": (T, k), "ids": (T, k), "rest": (T,)},
        }[target_type]
        for name, shape in expected.items():
            check_shape(cut_id, f"{target_type} {name}", stored[name], shape)


def collate_targets(
    arrays: dict[str, list[dict[str, np.ndarray]]],
    frames: list[int],
    tokens: list[list[int]],
    hyps: list[dict | None] | None = None,
    one_best_shift: int = 0,
) -> dict:
    """Pads and stacks B utterances' target arrays into a batch's targets (see the module docstring).

    Args:
        arrays: ``{type: B dicts {field: array}}`` in the stored layout (kd.targets.compute).
        frames: the B teacher frame counts. tokens: the B label sequences the lattice targets are on.
        hyps: B ``{"text", "score"}`` dicts (None where no hypothesis), or None when ``hyp`` is not asked for.
        one_best_shift: frames by which the one-best paths move right.
    """
    frame_lens = torch.tensor(frames, dtype=torch.int64)
    out: dict = {
        "frames": frame_lens,
        "tokens": tokens,
        "token_lens": torch.tensor([len(y) for y in tokens], dtype=torch.int64),
    }
    if "pruned" in arrays:
        stored = arrays["pruned"]
        S = stored[0]["logprobs"].shape[1]
        # padding frames repeat the last frame's window, so that gathers on them stay inside the lattice
        starts = [
            np.pad(a["start"].astype(np.int64), (0, max(frames) - a["start"].size), mode="edge")
            for a in stored
        ]
        ranges = torch.from_numpy(np.stack(starts)).unsqueeze(2) + torch.arange(S)
        out["pruned"] = {"ranges": ranges, **_collate_topk(stored)}
    if "pxpy" in arrays:
        out["pxpy"] = {name: pad_stack([a[name] for a in arrays["pxpy"]]) for name in ("px", "py")}
    if "one_best" in arrays:
        stored = arrays["one_best"]
        nodes = pad_stack([a["nodes"] for a in stored])
        lengths = torch.tensor([a["nodes"].shape[0] for a in stored], dtype=torch.int64)
        if one_best_shift:
            nodes = shift_path(nodes, lengths, one_best_shift, frame_lens)
        out["one_best"] = {"nodes": nodes, "lengths": lengths, **_collate_topk(stored)}
    if "enc_logits" in arrays:
        out["enc_logits"] = _collate_topk(arrays["enc_logits"])
    if hyps is not None:
        out["hyp"] = {
            "texts": [h["text"] if h else "" for h in hyps],
            "scores": torch.tensor([h["score"] if h else float("nan") for h in hyps], dtype=torch.float32),
        }
    return out


def collate_computed(
    computed: list[CutTargets],
    types: Sequence[str],
    one_best_shift: int = 0,
    tokenizer: Tokenizer | None = None,
) -> dict:
    """A batch's targets straight from :func:`kd.targets.compute.compute_targets` (a teacher run in the
    training job), in the form the data module gives stored ones: the same fp16 numbers, padded alike.

    Args:
        computed: the B utterances' targets. types: those to deliver. one_best_shift: as TargetLoader.
        tokenizer: decodes the hypotheses' texts (``hyp`` texts are "" without one).
    """
    arrays = {t: [c.arrays[t] for c in computed] for t in types if STORED_FIELDS[t]}
    hyps = None
    if "hyp" in types:
        hyps = [
            {"text": tokenizer.decode(c.hyp.tokens) if tokenizer else "", "score": c.hyp.score}
            if c.hyp
            else None
            for c in computed
        ]
    return collate_targets(
        arrays, [c.frames for c in computed], [c.tokens for c in computed], hyps, one_best_shift
    )


def pad_stack(arrays: list[np.ndarray]) -> Tensor:
    """Stacks arrays of equal rank, zero-padded at the end of every axis to the largest size; floats become
    float32, integers int64.

    Returns:
        (B, *max shape).
    """
    shape = tuple(max(sizes) for sizes in zip(*(a.shape for a in arrays)))
    dtype = torch.float32 if arrays[0].dtype.kind == "f" else torch.int64
    out = torch.zeros((len(arrays), *shape), dtype=dtype)
    for b, a in enumerate(arrays):
        out[(b, *(slice(0, n) for n in a.shape))] = torch.from_numpy(
            a.astype(np.float32 if a.dtype.kind == "f" else np.int64)
        )
    return out


def _collate_topk(arrays: list[dict]) -> dict[str, Tensor]:
    return {name: pad_stack([a[name] for a in arrays]) for name in ("logprobs", "ids", "rest")}
