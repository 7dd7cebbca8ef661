"""CoDERT co-learning (METHODS.md (b)): a teacher and a student transducer trained together in one job.

:class:`CoLearner` holds both models; its forward runs each on the batch and returns both outputs, from which
:class:`kd.train.distill.CoLearnObjective` takes the two transducer losses and the encoder-logit KD term.
Its checkpoints hold both models (state-dict keys ``teacher.*`` and ``student.*``); :func:`colearn_part`
gives either one as a plain transducer, for decoding.

Shared decoder ("implicit distillation"): the student uses the teacher's decoder and joiner, as the same
modules (one tensor each, trained by both models' losses): ``decoder``, ``simple_lm_proj`` and the joiner's
``decoder_proj`` and ``output_linear``. The encoder-side projections (the joiner's ``encoder_proj``,
``simple_am_proj``, ``ctc_output``) stay per model: each maps its own encoder's output, whose size may
differ, into the joint space (METHODS.md (b): "the joiner's W_e maps each to the joint dimension").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kd.models.build import build_model
from kd.models.cascaded import CascadedOutput
from kd.models.config import ModelConfig
from kd.models.transducer import Transducer, TransducerOutput

PARTS = ("student", "teacher")


@dataclass
class CoLearnOutput:
    """Both models' outputs of one :class:`CoLearner` forward (each as its model's own forward returns)."""

    teacher: TransducerOutput | CascadedOutput
    student: TransducerOutput | CascadedOutput

    @property
    def encoder_out_lens(self) -> torch.Tensor:
        """(B,) int64 the student's encoder frames (the per-frame normaliser)."""
        return self.student.encoder_out_lens


class CoLearner(nn.Module):
    """``teacher`` and ``student`` transducers, trained together; with ``shared_decoder`` the student's
    decoder and joiner (all but its ``encoder_proj``) are the teacher's modules (see the module docstring).

    Args:
        teacher_config: the teacher's architecture.
        student_config: the student's architecture.
        vocab_size: the output size of both (one tokenizer).
        shared_decoder: share the decoder and joiner; the two configs must then agree on the decoder and
            joiner_dim.

    Raises:
        ValueError: shared_decoder with different decoder configs or joiner dims.
    """

    def __init__(
        self,
        teacher_config: ModelConfig,
        student_config: ModelConfig,
        vocab_size: int,
        shared_decoder: bool = False,
    ) -> None:
        super().__init__()
        self.teacher: Transducer = build_model(teacher_config, vocab_size)
        self.student: Transducer = build_model(student_config, vocab_size)
        self.shared_decoder = shared_decoder
        if not shared_decoder:
            return
        if (teacher_config.decoder, teacher_config.joiner_dim) != (
            student_config.decoder,
            student_config.joiner_dim,
        ):
            raise ValueError(
                "kd.shared_decoder: the student uses the teacher's decoder and joiner, so model.decoder and "
                "model.joiner_dim must equal kd.teacher_model.decoder and kd.teacher_model.joiner_dim "
                f"(got {student_config.decoder}, {student_config.joiner_dim} and {teacher_config.decoder}, "
                f"{teacher_config.joiner_dim})"
            )
        # Assigning the teacher's modules replaces the student's own (its fresh copies are dropped), so
        # each shared weight is one tensor that both models' losses update. A tied decoder's embedding is
        # the teacher's output layer, which stays tied as both are shared.
        self.student.decoder = self.teacher.decoder
        self.student.simple_lm_proj = self.teacher.simple_lm_proj
        self.student.joiner.decoder_proj = self.teacher.joiner.decoder_proj
        self.student.joiner.output_linear = self.teacher.joiner.output_linear

    def forward(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        y: list[list[int]],
        prune_range: int = 5,
        am_scale: float = 0.0,
        lm_scale: float = 0.25,
        rnnt_type: str = "regular",
        reduction: str = "sum",
        warmup: float = 1.0,
    ) -> CoLearnOutput:
        """Both models' pruned RNN-T forwards on the same batch; the arguments are those of
        :meth:`Transducer.forward` (x: (B, T, F), x_lens: (B,), y: B token-id lists)."""
        kwargs = dict(
            prune_range=prune_range,
            am_scale=am_scale,
            lm_scale=lm_scale,
            rnnt_type=rnnt_type,
            reduction=reduction,
            warmup=warmup,
        )
        return CoLearnOutput(
            teacher=self.teacher(x, x_lens, y, **kwargs), student=self.student(x, x_lens, y, **kwargs)
        )


def colearn_part(model: nn.Module, part: str) -> nn.Module:
    """The ``part`` ("student" or "teacher") of a :class:`CoLearner` as the plain transducer it is (with
    the shared modules, if any); any other model is a single transducer, its own "student".

    Raises:
        ValueError: an unknown part, or "teacher" of a model that is not a :class:`CoLearner`.
    """
    if part not in PARTS:
        raise ValueError(f"part={part!r} must be one of {list(PARTS)}")
    if isinstance(model, CoLearner):
        return getattr(model, part)
    if part == "teacher":
        raise ValueError(
            f"part='teacher': the model is a single {type(model).__name__}, not a co-learned teacher and "
            "student (trained with kd.mode: colearn); decode it without a part"
        )
    return model
