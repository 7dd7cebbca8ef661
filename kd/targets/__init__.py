"""Teacher targets for distillation: generated once from a trained teacher, stored as arrays attached to the
cuts, delivered padded in the student's batches.

Target types (``TargetConfig.types``; what is stored per cut is in kd.targets.compute, how a batch
carries them in kd.targets.loading):
    pruned      the teacher's prune ranges and its top-k log-probs (+ the rest of the mass) on those nodes
    pxpy        the teacher's px / py over the full lattice
    one_best    the teacher's one-best lattice path with its top-k log-probs per node
    hyp         the teacher's best hypothesis and score (the transcript of unlabelled cuts)
    enc_logits  the top-k of the teacher's encoder logits per frame

Modules: ``config`` (what to compute), ``compute`` (the teacher's targets of a batch), ``storage``
(lossless array archives attached to cuts), ``manifest`` (teacher/tokenizer identity, settings,
statistics, file layout), ``generate`` (sharded, resumable runs), ``loading`` (checks and collation for the
data module), ``validation`` (the checks). Command line: ``python -m kd.bin.generate_targets``.
"""

from kd.targets.config import LATTICE_TYPES, STORED_FIELDS, TARGET_TYPES, TargetConfig
from kd.targets.generate import LmSpec, TeacherSpec, generate_targets
from kd.targets.loading import TargetLoader, collate_computed
from kd.targets.manifest import (
    GenerationStats,
    LmInfo,
    TargetsManifest,
    TeacherInfo,
    TokenizerInfo,
    load_manifest,
    manifest_for_cuts,
)
from kd.targets.validation import TargetsError

__all__ = [
    "LATTICE_TYPES",
    "STORED_FIELDS",
    "TARGET_TYPES",
    "GenerationStats",
    "LmInfo",
    "LmSpec",
    "TargetConfig",
    "TargetLoader",
    "TargetsError",
    "TargetsManifest",
    "TeacherInfo",
    "TeacherSpec",
    "TokenizerInfo",
    "collate_computed",
    "generate_targets",
    "load_manifest",
    "manifest_for_cuts",
]
