"""Checks that a set of targets fits the student that loads it: same tokenizer, same teacher, same frames and
tokens per cut, arrays of the recorded shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kd.data.errors import DataError

if TYPE_CHECKING:
    from kd.targets.manifest import TargetsManifest, TeacherInfo, TokenizerInfo


class TargetsError(DataError):
    """Targets that are missing, damaged, or do not match the cuts, the student's tokenizer or the teacher."""


def check_manifest(
    manifest: TargetsManifest, tokenizer: TokenizerInfo, teacher: TeacherInfo | None = None, where: str = ""
) -> None:
    """Refuses targets made with another tokenizer (compared by content) or, when ``teacher`` is given, by
    another teacher (compared by config and weights).

    Raises:
        TargetsError: naming both tokenizers or both teachers.
    """
    where = where or "the targets"
    if manifest.tokenizer.sha256 != tokenizer.sha256:
        raise TargetsError(
            f"{where} were made with the tokenizer {manifest.tokenizer.describe()} but the student uses "
            f"{tokenizer.describe()}: token ids would not match; regenerate the targets with the student's "
            "BPE model or train the student with the teacher's"
        )
    if teacher is not None and manifest.teacher.id != teacher.id:
        raise TargetsError(
            f"{where} come from the teacher {manifest.teacher.describe()} but this run expects "
            f"{teacher.describe()}; regenerate the targets or point the run at the other teacher"
        )


def check_cut(
    cut_id: str,
    meta: dict,
    teacher: TeacherInfo,
    frames: int,
    tokens: list[int] | None,
) -> None:
    """Refuses one cut's targets that do not fit it.

    Args:
        cut_id: for the messages.
        meta: the cut's target record (``teacher``, ``frames``, ``tokens``, ...).
        teacher: the manifest's teacher.
        frames: the student's encoder frames for the cut.
        tokens: the cut's reference tokens with the student's tokenizer, None for an unlabelled cut.

    Raises:
        TargetsError: naming the cut and what differs.
    """
    if meta.get("teacher") != teacher.id:
        raise TargetsError(
            f"cut {cut_id}: its targets come from the teacher with id {meta.get('teacher')} but the targets "
            f"manifest names {teacher.describe()}; do not mix cuts from different target runs"
        )
    if meta.get("frames") != frames:
        raise TargetsError(
            f"cut {cut_id}: the targets have {meta.get('frames')} teacher frames but the student's encoder "
            f"gives {frames} for its features; teacher and student must share the features and the x4 "
            "subsampling, and the cut must not be perturbed or truncated after target generation"
        )
    if tokens is not None and list(meta.get("tokens", ())) != list(tokens):
        raise TargetsError(
            f"cut {cut_id}: its transcript gives {len(tokens)} tokens with the student's tokenizer but the "
            f"targets were made for {len(meta.get('tokens', ()))} other tokens; the transcript changed after "
            "target generation"
        )


def check_shape(cut_id: str, name: str, array: np.ndarray, expected: tuple[int, ...]) -> None:
    """Raises a TargetsError when a stored array does not have the shape its cut's record implies."""
    if tuple(array.shape) != tuple(expected):
        raise TargetsError(
            f"cut {cut_id}: the stored {name} is {tuple(array.shape)} but its record implies "
            f"{tuple(expected)}; the targets are damaged, regenerate them"
        )
