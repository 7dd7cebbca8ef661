"""Distillation objectives: the student's own pruned RNN-T loss plus one KD term (METHODS.md (a)-(d)).

    L = simple_scale * L_simple + pruned_scale * L_pruned + ctc_scale * L_ctc + weight * L_kd

Every term is summed over the batch; the trainer divides by the batch's encoder frames, so the KD terms are
normalised per frame like the transducer loss. The teacher side comes from the targets attached to the cuts
(``source: stored``, written by ``python -m kd.bin.generate_targets``) or from a teacher run in the same job
(``source: online``), which computes the very same targets per batch (kd.targets.compute) and so gives the
same loss as stored targets, trading disk for compute.

Methods (``kd.method``):
    none            the plain transducer loss (a student trained without KD)
    collapsed       (a) KL of the 3-class y/blank/rest distributions, on the student's ``pruned`` lattice or
                    the ``full`` lattice (``kd.lattice``); teacher px/py from the ``pxpy`` targets
    one_best        (c) CE on the teacher's one-best path nodes against its top-k, optional right ``shift``
    soft_lattice    (d) KL on the teacher's pruned lattice: the student's joiner at the teacher's ranges
    encoder_logits  (b) KL of the joiner's encoder-only logits per frame
    hard            (d) no KD term: unlabelled cuts train on the teacher's hypothesis (pseudo-labels),
                    filtered by confidence (``min_hyp_score``, the hypothesis log-prob per frame)
A cascaded student (METHODS.md (e)) gets the KD term on each pass, weighted as the passes' transducer losses.

Teacher modes (``kd.mode``):
    static   a trained, frozen teacher: stored targets or an online teacher, as above
    colearn  (b, encoder_logits only) CoDERT's co-learning: a teacher of architecture ``kd.teacher_model`` and
             the student train together from scratch in this job (kd.models.colearn.CoLearner),
             L = L_rnnt(T) + L_rnnt(S) + weight * KL(e^T || e^S) with the teacher's encoder logits e^T
             detached (:class:`CoLearnObjective`); with ``kd.shared_decoder`` the two share one decoder and
             joiner ("implicit distillation", which ``weight: 0`` isolates). The checkpoints hold both
             models; the student is validated. ``kd.shared_decoder`` needs colearn: for a static teacher
             the source leaves open whether its shared decoder would stay frozen or train on.

The student's lattice is built on the tokens the targets were made for: the reference of a labelled cut,
the teacher's hypothesis of an unlabelled one. The transducer loss of an unlabelled cut (on that hypothesis)
counts for ``hard`` and, with ``unlabelled_rnnt``, for the other methods; its KD term always counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from kd import losses
from kd.config import ConfigError
from kd.data.tokenizer import Tokenizer
from kd.losses.topk import TopK
from kd.models import ModelConfig, build_model
from kd.models.colearn import CoLearner
from kd.train.objective import (
    BatchLoss,
    LossConfig,
    TransducerObjective,
    layer_warmup,
    unwrap,
    warmup_scales,
)

if TYPE_CHECKING:
    from lhotse import CutSet

    from kd.targets.loading import TargetLoader
    from kd.train.config import TrainConfig

METHODS = ("none", "collapsed", "one_best", "soft_lattice", "encoder_logits", "hard")
MODES = ("static", "colearn")
# The stored target type each method reads.
TARGET_TYPE = {
    "collapsed": "pxpy",
    "one_best": "one_best",
    "soft_lattice": "pruned",
    "encoder_logits": "enc_logits",
    "hard": "hyp",
}


@dataclass
class KdConfig:
    method: str = "none"  # see METHODS
    weight: float = 1.0  # lambda of the KD term
    temperature: float = 1.0  # divides the student's logits (stored targets were made at temperature 1)
    scale_by_t2: bool = False  # multiply the KD term by temperature^2 (Hinton et al.)
    source: str = "stored"  # stored (targets attached to paths.train_cuts) | online (teacher in this job)
    teacher: str = ""  # online: the teacher's experiment dir
    teacher_epoch: int = 0  # online: its epoch (0: the newest)
    teacher_avg: int = 1  # online: checkpoints averaged
    topk: int = 8  # online: classes kept per node (stored targets carry their own k)
    max_sym_per_frame: int = 1  # online: symbols per frame of the teacher's hypothesis search (2 for letters)
    lattice: str = "pruned"  # collapsed: pruned (the student's prune ranges) | full (every node)
    chunk_frames: int = 16  # collapsed on the full lattice: frames per joiner chunk (bounds peak memory)
    shift: int = 0  # one_best: frames the teacher path moves right (streaming students)
    unlabelled_rnnt: bool = False  # train unlabelled cuts also with the transducer loss on the hypothesis
    min_hyp_score: float = -math.inf  # drop pseudo-labels whose log-prob per frame is below this
    mode: str = "static"  # static (a trained teacher) | colearn (teacher and student trained together)
    shared_decoder: bool = False  # colearn: the student uses the teacher's decoder and joiner
    teacher_model: ModelConfig | None = None  # colearn: the co-learned teacher's architecture

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"kd.method={self.method!r} must be one of {list(METHODS)}")
        if self.mode not in MODES:
            raise ValueError(f"kd.mode={self.mode!r} must be one of {list(MODES)}")
        if self.mode == "colearn":
            self._check_colearn()
        elif self.shared_decoder or self.teacher_model is not None:
            raise ValueError(
                "kd.shared_decoder and kd.teacher_model belong to kd.mode=colearn (a static teacher's "
                "architecture comes from its experiment dir); set kd.mode: colearn or drop them"
            )
        if self.source not in ("stored", "online"):
            raise ValueError(f"kd.source={self.source!r} must be 'stored' or 'online'")
        if self.lattice not in ("pruned", "full"):
            raise ValueError(f"kd.lattice={self.lattice!r} must be 'pruned' or 'full'")
        if self.temperature <= 0 or self.weight < 0 or self.chunk_frames < 1 or self.shift < 0:
            raise ValueError(
                f"kd: temperature={self.temperature} must be > 0, weight={self.weight} >= 0, "
                f"chunk_frames={self.chunk_frames} >= 1, shift={self.shift} >= 0"
            )
        if self.source == "online" and self.method != "none" and not self.teacher:
            raise ValueError("kd.source=online needs kd.teacher: the teacher's experiment dir")

    def _check_colearn(self) -> None:
        if self.method != "encoder_logits":
            raise ValueError(
                f"kd.mode=colearn distils encoder logits: set kd.method: encoder_logits (got {self.method!r})"
            )
        if self.teacher_model is None:
            raise ValueError(
                "kd.mode=colearn needs kd.teacher_model: the architecture of the teacher trained in this job "
                "(a mapping like the top-level model section)"
            )
        if self.source != "stored" or self.teacher:
            raise ValueError(
                "kd.source=online and kd.teacher name a trained teacher; kd.mode=colearn trains its teacher "
                "in this job: drop them"
            )

    @property
    def target_types(self) -> list[str]:
        """The target types this method reads ([] for none and for a co-learned teacher)."""
        if self.method == "none" or self.mode == "colearn":
            return []
        return [TARGET_TYPE[self.method]] + (["hyp"] if self.method != "hard" else [])


class DistillObjective:
    """The student's transducer loss (as :class:`~kd.train.objective.TransducerObjective`) plus the KD term.

    Args:
        loss: the student's transducer-loss settings.
        kd: the KD method and its settings.
        tokenizer: the student's tokenizer (the teacher's, checked where the targets are loaded).
        teacher_targets: online mode: a callable ``(batch) -> targets`` giving what the data module gives
            with stored targets (see :class:`OnlineTeacher`); None for stored targets.
    """

    def __init__(
        self, loss: LossConfig, kd: KdConfig, tokenizer: Tokenizer, teacher_targets: Any | None = None
    ) -> None:
        self.loss = loss
        self.kd = kd
        self.tokenizer = tokenizer
        self.teacher_targets = teacher_targets

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> BatchLoss:
        device = next(model.parameters()).device
        features = batch["features"].to(device)
        feature_lens = batch["feature_lens"].to(device)
        targets = self._targets(batch)
        tokens = targets["tokens"] if targets is not None else self.tokenizer.encode(batch["texts"])
        labelled = torch.tensor([bool(t) for t in batch["texts"]], device=device)
        out = model(
            features,
            feature_lens,
            tokens,
            prune_range=self.loss.prune_range,
            am_scale=self.loss.am_scale,
            lm_scale=self.loss.lm_scale,
            rnnt_type=self.loss.rnnt_type,
            reduction="none",
            warmup=layer_warmup(self.loss, step),
        )
        keep = self._rnnt_mask(labelled, targets, out.encoder_out_lens)
        total, terms = _transducer_terms(self.loss, unwrap(model), out, keep, step)
        if self.kd.method not in ("none", "hard"):
            passes = _passes(unwrap(model), out)
            kd = sum(w * self._kd_term(unwrap(model), p, targets, device) for w, p in passes)
            total = total + self.kd.weight * kd
            terms[f"kd_{self.kd.method}"] = kd.item()
        return BatchLoss(
            total=total,
            terms=terms,
            num_frames=int(out.encoder_out_lens.sum().item()),
            num_utts=features.size(0),
        )

    def _targets(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        if self.kd.method == "none":
            return None
        if self.teacher_targets is not None:
            return self.teacher_targets(batch)
        if "targets" not in batch:
            raise RuntimeError(
                f"kd.method={self.kd.method} with stored targets, but the batch has none: train on the "
                "cuts written by python -m kd.bin.generate_targets (paths.train_cuts), or use "
                "kd.source=online"
            )
        return batch["targets"]

    def _rnnt_mask(self, labelled: Tensor, targets: dict[str, Any] | None, frames: Tensor) -> Tensor:
        """(B,) 1.0 for the utterances whose transducer loss counts."""
        use_hyps = self.kd.method == "hard" or self.kd.unlabelled_rnnt
        if not use_hyps or targets is None or "hyp" not in targets:
            return labelled.float()
        scores = targets["hyp"]["scores"].to(frames.device)
        confident = (scores / frames.clamp(min=1)) >= self.kd.min_hyp_score
        has_hyp = targets["token_lens"].to(frames.device) > 0
        return (labelled | (confident & has_hyp)).float()

    def _kd_term(
        self, model: torch.nn.Module, out: Any, targets: dict[str, Any], device: torch.device
    ) -> Tensor:
        kd = self.kd
        t = {
            k: v.to(device) if isinstance(v, Tensor) else v
            for k, v in targets[TARGET_TYPE[kd.method]].items()
        }
        common = dict(temperature=kd.temperature, scale_by_t2=kd.scale_by_t2)
        frame_lens = out.encoder_out_lens
        symbol_lens = out.boundary[:, 2]
        if kd.method == "encoder_logits":
            student = model.joiner.encoder_logits(out.encoder_out)
            return losses.encoder_logit_kl(student, _topk(t), frame_lens, **common)
        if kd.method == "soft_lattice":
            ranges = t["ranges"][:, : out.encoder_out.size(1)]
            student = model.pruned_logits(out.encoder_out, out.decoder_out, ranges)
            return losses.soft_lattice_kl(student, _topk(t), ranges, frame_lens, symbol_lens, **common)
        if kd.method == "one_best":
            am = model.joiner.encoder_proj(out.encoder_out)
            lm = model.joiner.decoder_proj(out.decoder_out)
            joiner = partial(model.joiner, project_input=False)
            student = losses.gather_node_logits(joiner, am, lm, t["nodes"])
            return losses.one_best_ce(student, _topk(t), t["lengths"], **common)
        # collapsed
        px, py = t["px"], t["py"]
        if kd.lattice == "pruned":
            return losses.collapsed_kl_pruned(
                out.logits, out.ranges, out.symbols, px, py, out.boundary, blank_id=model.blank_id, **common
            )
        return losses.collapsed_kl_full_chunked(
            partial(model.joiner, project_input=False),
            model.joiner.encoder_proj(out.encoder_out),
            model.joiner.decoder_proj(out.decoder_out),
            out.symbols,
            px,
            py,
            out.boundary,
            kd.chunk_frames,
            blank_id=model.blank_id,
            **common,
        )


class CoLearnObjective:
    """CoDERT co-learning (``kd.mode: colearn``): both transducer losses of a
    :class:`~kd.models.colearn.CoLearner` plus the encoder-logit KL of the student against the teacher,

        L = L_rnnt(T) + L_rnnt(S) + weight * sum_t KL(softmax(e^T_t / tau) || softmax(e^S_t / tau)),

    each L_rnnt weighted as :class:`DistillObjective` weights the student's (simple, pruned, ctc). The
    teacher's encoder logits are computed without autograd, so the KD term trains the student only (and,
    with a shared decoder, the shared output layer through the student's logits); the teacher learns from
    its own transducer loss. A cascaded student distils each pass against the teacher's final pass.

    Terms: ``teacher_simple``, ``teacher_pruned``, ``student_simple``, ``student_pruned`` (``*_ctc`` with
    ``loss.ctc_scale``), ``kd_encoder_logits``.
    """

    def __init__(self, loss: LossConfig, kd: KdConfig, tokenizer: Tokenizer) -> None:
        self.loss = loss
        self.kd = kd
        self.tokenizer = tokenizer

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> BatchLoss:
        colearner = unwrap(model)
        if not isinstance(colearner, CoLearner):
            raise TypeError(
                f"kd.mode=colearn trains a CoLearner, got a {type(colearner).__name__}: build the model with "
                "build_training_model"
            )
        device = next(model.parameters()).device
        features = batch["features"].to(device)
        feature_lens = batch["feature_lens"].to(device)
        out = model(
            features,
            feature_lens,
            self.tokenizer.encode(batch["texts"]),
            prune_range=self.loss.prune_range,
            am_scale=self.loss.am_scale,
            lm_scale=self.loss.lm_scale,
            rnnt_type=self.loss.rnnt_type,
            reduction="none",
            warmup=layer_warmup(self.loss, step),
        )
        every = torch.ones(features.size(0), device=device)
        total = torch.zeros((), device=device)
        terms: dict[str, float] = {}
        for name in ("teacher", "student"):
            part_total, part_terms = _transducer_terms(
                self.loss, getattr(colearner, name), getattr(out, name), every, step
            )
            total = total + part_total
            terms.update({f"{name}_{k}": v for k, v in part_terms.items()})
        teacher = _passes(colearner.teacher, out.teacher)[-1][1]
        with torch.no_grad():
            teacher_logits = colearner.teacher.joiner.encoder_logits(teacher.encoder_out)
        kd = sum(
            w
            * losses.encoder_logit_kl(
                colearner.student.joiner.encoder_logits(p.encoder_out),
                teacher_logits,
                p.encoder_out_lens,
                temperature=self.kd.temperature,
                scale_by_t2=self.kd.scale_by_t2,
            )
            for w, p in _passes(colearner.student, out.student)
        )
        terms["kd_encoder_logits"] = kd.item()
        return BatchLoss(
            total=total + self.kd.weight * kd,
            terms=terms,
            num_frames=int(out.encoder_out_lens.sum().item()),
            num_utts=features.size(0),
        )


def _transducer_terms(
    config: LossConfig, model: torch.nn.Module, out: Any, keep: Tensor, step: int
) -> tuple[Tensor, dict[str, float]]:
    """One model's weighted transducer loss (simple, pruned and, with ``ctc_scale``, CTC on the final pass)
    over the utterances ``keep`` selects.

    Args:
        model: the bare transducer ``out`` came from.
        out: its forward with reduction="none": losses (B,).
        keep: (B,) float, 1.0 for the utterances whose loss counts.
    Returns:
        (the weighted sum, a scalar tensor; each term summed over the kept utterances).
    """
    simple_scale, pruned_scale = warmup_scales(config, step)
    simple = (out.simple_loss * keep).sum()
    pruned = (out.pruned_loss * keep).sum()
    total = simple_scale * simple + pruned_scale * pruned
    terms = {"simple": simple.item(), "pruned": pruned.item()}
    if config.ctc_scale > 0:
        final = _passes(model, out)[-1][1]
        ctc = model.ctc_loss(
            final.encoder_out, final.encoder_out_lens, final.symbols, final.boundary[:, 2], "none"
        )
        ctc = (ctc * keep).sum()
        total = total + config.ctc_scale * ctc
        terms["ctc"] = ctc.item()
    return total, terms


def _passes(model: torch.nn.Module, out: Any) -> list[tuple[float, Any]]:
    """(weight, TransducerOutput) of each pass: a cascaded student (METHODS.md (e)) distils both of its
    passes, weighted as their transducer losses are; a one-pass student has one, of weight 1."""
    if hasattr(out, "second_pass"):
        return [(model.first_pass_weight, out.first_pass), (model.second_pass_weight, out.second_pass)]
    return [(1.0, out)]


def _topk(t: dict[str, Tensor]) -> TopK:
    return TopK(t["logprobs"], t["ids"], t["rest"])


class OnlineTeacher:
    """Online-teacher mode: the teacher's targets for each batch, computed in the training job.

    They are the targets ``python -m kd.bin.generate_targets`` would store (kd.targets.compute), collated
    as the data module delivers stored ones, so both modes give the same loss. The teacher sees the batch's
    features as given to the student (turn SpecAugment off for a like-for-like comparison).
    """

    def __init__(
        self, config: KdConfig, loss: LossConfig, tokenizer: Tokenizer, device: torch.device
    ) -> None:
        from kd.targets.config import TargetConfig
        from kd.train.restore import load_trained_model

        trained = load_trained_model(config.teacher, config.teacher_epoch or None, config.teacher_avg, device)
        last = int(trained.checkpoints[-1].stem.split("-")[1])
        if not config.teacher_epoch and last < trained.config.train.num_epochs:
            # A teacher row trained in the same run.sh stage may still be training (or have been stopped).
            raise ConfigError(
                f"kd.teacher {config.teacher} has trained {last} of its {trained.config.train.num_epochs} "
                "epochs: finish its training first (rerun it to resume), or set kd.teacher_epoch to the "
                "epoch to learn from"
            )
        if trained.tokenizer.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"kd.teacher {config.teacher} has a {trained.tokenizer.vocab_size}-token vocabulary, the "
                f"student's tokenizer {tokenizer.vocab_size}: distillation needs one tokenizer"
            )
        self.teacher = trained.model.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.shift = config.shift
        self.target_config = TargetConfig(
            # The hypothesis scores only serve the pseudo-label filter; an unlabelled cut's hypothesis is
            # searched anyway (its lattice is built on it), so a labelled batch skips the beam search.
            types=[
                t
                for t in config.target_types
                if t != "hyp" or config.method == "hard" or config.unlabelled_rnnt
            ],
            topk=config.topk,
            prune_range=loss.prune_range,
            lm_scale=loss.lm_scale,
            am_scale=loss.am_scale,
            rnnt_type=loss.rnnt_type,
            max_sym_per_frame=config.max_sym_per_frame,
        )

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from kd.targets.compute import compute_targets
        from kd.targets.loading import collate_computed

        device = next(self.teacher.parameters()).device
        labels = [
            y if text else None for y, text in zip(self.tokenizer.encode(batch["texts"]), batch["texts"])
        ]
        computed = compute_targets(
            self.teacher,
            batch["features"].to(device),
            batch["feature_lens"].to(device),
            labels,
            self.target_config,
        )
        return collate_computed(computed, self.target_config.types, self.shift, self.tokenizer)


def build_training_model(config: TrainConfig, vocab_size: int) -> torch.nn.Module:
    """The model a training config trains: ``config.model``, or for ``kd.mode: colearn`` a
    :class:`~kd.models.colearn.CoLearner` of ``kd.teacher_model`` and ``config.model`` (the student)."""
    kd = config.kd
    if kd.mode == "colearn":
        return CoLearner(kd.teacher_model, config.model, vocab_size, shared_decoder=kd.shared_decoder)
    return build_model(config.model, vocab_size=vocab_size)


def build_objective(
    config: TrainConfig, tokenizer: Tokenizer, device: torch.device
) -> tuple[TransducerObjective | DistillObjective | CoLearnObjective, TargetLoader | None]:
    """The objective a training config asks for, and the targets loader its data module needs.

    Returns:
        (objective, target loader or None): the plain transducer objective for ``kd.method: none``; a
        :class:`CoLearnObjective` for ``kd.mode: colearn`` (no targets); otherwise a
        :class:`DistillObjective`, with a loader of the targets attached to ``paths.train_cuts`` (stored)
        or an :class:`OnlineTeacher` (online).
    """
    kd = config.kd
    if kd.mode == "colearn":
        return CoLearnObjective(config.loss, kd, tokenizer), None
    if kd.method == "none":
        return TransducerObjective(config.loss, tokenizer), None
    if kd.source == "online":
        return DistillObjective(
            config.loss, kd, tokenizer, OnlineTeacher(kd, config.loss, tokenizer, device)
        ), None
    from kd.targets.loading import TargetLoader
    from kd.targets.manifest import load_manifest, manifest_for_cuts

    manifest = load_manifest(manifest_for_cuts(config.paths.train_cuts))
    loader = TargetLoader(manifest, tokenizer, types=kd.target_types, one_best_shift=kd.shift)
    return DistillObjective(config.loss, kd, tokenizer), loader


def training_cuts(config: TrainConfig, load_labelled: Callable[[str, str], CutSet]) -> CutSet:
    """The training cuts: the labelled ``paths.train_cuts``, plus ``paths.unlabelled_cuts`` for KD.

    Args:
        load_labelled: ``(path, what) -> CutSet`` of the labelled cuts of a manifest.
    """
    from lhotse import CutSet  # noqa: F811 (the runtime import of the name the annotations use)

    cuts = load_labelled(config.paths.train_cuts, "train_cuts")
    if not config.paths.unlabelled_cuts:
        return cuts
    if config.kd.method == "none":
        raise ValueError(
            "paths.unlabelled_cuts is set but kd.method is none: a student without KD cannot use unlabelled "
            "audio; pick a KD method or drop paths.unlabelled_cuts"
        )
    if config.kd.mode == "colearn":
        raise ValueError(
            "paths.unlabelled_cuts is set but kd.mode is colearn: the co-learned teacher trains on "
            "transcripts and has no hypotheses to give; drop paths.unlabelled_cuts"
        )
    unlabelled = CutSet.from_file(config.paths.unlabelled_cuts).to_eager()
    return (cuts + unlabelled).to_eager()
