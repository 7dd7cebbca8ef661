"""Modified beam search for transducers (icefall's), batched over utterances and hypotheses.

At most one symbol is emitted per frame. Each frame, every hypothesis of an utterance is extended by every
vocabulary entry (blank keeps the sequence), the best ``beam`` of the hypotheses x vocabulary candidates
survive, and candidates that spell the same token sequence are merged by adding their probabilities. An
optional language model with the decoder's step API is fused shallowly: non-blank candidates gain
``lm_scale`` times the LM's log-probability of the token, before the top-k, so the LM shapes the beam. The
LM's log-probabilities are negative, so fusion alone favours blank; ``blank_penalty`` (subtracted from the
joiner's blank logit before the log-softmax, as icefall's) offsets that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kd.decode.results import DecodingResults, check_encoder_out, package
from kd.decode.states import StateBatcher


@dataclass
class _Hyp:
    ys: tuple[int, ...]
    score: float
    timestamps: tuple[int, ...]
    parent: int  # row of the hypothesis it extends, in the previous frame's flat order
    token: int | None  # the token it appended to its parent, None for blank

    @staticmethod
    def start() -> _Hyp:
        return _Hyp(ys=(), score=0.0, timestamps=(), parent=0, token=None)


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


class _Stepper:
    """Per-hypothesis rows of one step-API module (decoder or LM) and its latest output."""

    def __init__(
        self,
        module: Any,
        batch_size: int,
        blank_id: int,
        device: torch.device,
        project: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.module = module
        self.project = project
        self.batcher = StateBatcher(module, device)
        blanks = torch.full((batch_size,), blank_id, dtype=torch.int64, device=device)
        out, self.state = module.step(blanks, module.init_state(batch_size, device))
        self.out = project(out)

    def keep(self, rows: torch.Tensor) -> None:
        self.state = self.module.select_state(self.state, rows)
        self.out = self.out[rows]

    def extend(self, source: torch.Tensor, parents: torch.Tensor, tokens: torch.Tensor) -> None:
        """New rows: ``source`` (M,) entry r < R copies row r, entry R + e is row ``parents[e]`` stepped
        with ``tokens[e]``."""
        if tokens.numel() == 0:
            self.keep(source)
            return
        out, stepped = self.module.step(tokens, self.module.select_state(self.state, parents))
        self.state = self.batcher.merge(self.state, stepped, source)
        self.out = torch.cat([self.out, self.project(out).to(self.out.dtype)])[source]


@torch.inference_mode()
def modified_beam_search(
    model: nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam: int = 4,
    lm: Any = None,
    lm_scale: float = 0.0,
    blank_penalty: float = 0.0,
    return_timestamps: bool = False,
    return_scores: bool = False,
) -> list[list[int]] | DecodingResults:
    """Modified beam search over a batch of utterances of different lengths.

    Args:
        model: a transducer (``decoder`` with the step API, ``joiner``).
        encoder_out: (B, T, D_enc) raw encoder output; frames past an utterance's length are ignored.
        encoder_out_lens: (B,) valid frames per utterance.
        beam: hypotheses kept per utterance (>= 1); beam 1 is greedy search with one symbol per frame.
        lm: optional language model with ``init_state``, ``step(tokens (N,), state) -> (log_probs (N, V),
            state)`` and ``select_state``; ``step`` returns log-probabilities of the next token.
        lm_scale: weight of the LM log-probabilities (shallow fusion).
        blank_penalty: subtracted from the blank logit of the joiner before the log-softmax: a positive
            value makes blank less likely and hypotheses longer; the scores are those of the penalised
            distribution. 0 is the plain search.
        return_timestamps: also return the frame of each token of the best hypothesis.
        return_scores: also return the best hypothesis' score: the log-sum of the fused path scores of the
            alignments merged into it.
    Returns:
        the best hypothesis per utterance in input order, or :class:`DecodingResults` when timestamps or
        scores are asked for.
    """
    check_encoder_out(encoder_out, encoder_out_lens)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    device = encoder_out.device
    batch_size = encoder_out.size(0)
    blank_id = model.decoder.blank_id
    joiner = model.joiner
    encoder_out = joiner.encoder_proj(encoder_out)  # (B, T, J)
    lens = encoder_out_lens.tolist()

    decoder = _Stepper(model.decoder, batch_size, blank_id, device, joiner.decoder_proj)
    fusion = _Stepper(lm, batch_size, blank_id, device, lambda x: x) if lm is not None else None

    # hyps[i] is the beam of the i-th still-active utterance; flattened they index the steppers' rows.
    active = [b for b in range(batch_size) if lens[b] > 0]
    hyps = [[_Hyp.start()] for _ in active]
    finished = {b: [_Hyp.start()] for b in range(batch_size) if lens[b] == 0}
    keep = torch.tensor(active, dtype=torch.int64, device=device)
    decoder.keep(keep)
    if fusion is not None:
        fusion.keep(keep)

    for t in range(max(lens, default=0)):
        if any(lens[b] == t for b in active):
            active, hyps, rows = _retire(active, hyps, lens, t, finished)
            rows_t = torch.tensor(rows, dtype=torch.int64, device=device)
            decoder.keep(rows_t)
            if fusion is not None:
                fusion.keep(rows_t)

        counts = torch.tensor([len(h) for h in hyps], device=device)
        num_utts, max_count = len(hyps), int(counts.max())
        enc = encoder_out[torch.tensor(active, device=device), t].repeat_interleave(counts, dim=0)  # (H, J)
        logits = joiner(enc, decoder.out, project_input=False)  # (H, V)
        if blank_penalty != 0.0:
            logits[:, blank_id] -= blank_penalty
        log_probs = logits.float().log_softmax(dim=-1)
        if fusion is not None:
            lm_part = lm_scale * fusion.out.float()
            lm_part[:, blank_id] = 0.0
            log_probs = log_probs + lm_part
        scores = torch.tensor([h.score for beam_hyps in hyps for h in beam_hyps], device=device)
        candidates = log_probs + scores.unsqueeze(1)  # (H, V)
        vocab_size = candidates.size(1)

        # Lay the candidates out as (utterances, max_count * V) so one top-k serves the whole batch.
        utt = torch.repeat_interleave(torch.arange(num_utts, device=device), counts)
        slot = torch.arange(utt.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[utt]
        padded = candidates.new_full((num_utts, max_count, vocab_size), float("-inf"))
        padded[utt, slot] = candidates
        k = min(beam, max_count * vocab_size)
        top_scores, top_index = padded.view(num_utts, -1).topk(k, dim=1)

        hyps = _select(hyps, top_scores.tolist(), top_index.tolist(), vocab_size, blank_id, t)
        source, parents, tokens = _row_sources(hyps, num_rows=len(scores), device=device)
        decoder.extend(source, parents, tokens)
        if fusion is not None:
            fusion.extend(source, parents, tokens)

    finished.update(zip(active, hyps))
    best = [max(finished[b], key=lambda h: h.score) for b in range(batch_size)]
    return package(
        [list(h.ys) for h in best],
        [list(h.timestamps) for h in best],
        [h.score for h in best],
        return_timestamps,
        return_scores,
    )


def _retire(
    active: list[int], hyps: list[list[_Hyp]], lens: list[int], t: int, finished: dict[int, list[_Hyp]]
) -> tuple[list[int], list[list[_Hyp]], list[int]]:
    """Moves the beams of utterances that end at frame ``t`` into ``finished``; returns the remaining
    utterances, their beams and the flat rows those beams occupied."""
    rows, still_active, still_hyps, offset = [], [], [], 0
    for b, beam_hyps in zip(active, hyps):
        if lens[b] == t:
            finished[b] = beam_hyps
        else:
            rows.extend(range(offset, offset + len(beam_hyps)))
            still_active.append(b)
            still_hyps.append(beam_hyps)
        offset += len(beam_hyps)
    return still_active, still_hyps, rows


def _row_sources(
    hyps: list[list[_Hyp]], num_rows: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each new hypothesis' decoder row comes from, in :meth:`_Stepper.extend`'s terms: (source (M,),
    parents (E,), tokens (E,)) for M hypotheses of which E appended a token to a beam of ``num_rows``."""
    source, parents, tokens = [], [], []
    for beam_hyps in hyps:
        for h in beam_hyps:
            if h.token is None:
                source.append(h.parent)
            else:
                source.append(num_rows + len(tokens))
                parents.append(h.parent)
                tokens.append(h.token)
    return tuple(torch.tensor(x, dtype=torch.int64, device=device) for x in (source, parents, tokens))


def _select(
    hyps: list[list[_Hyp]],
    top_scores: list[list[float]],
    top_index: list[list[int]],
    vocab_size: int,
    blank_id: int,
    t: int,
) -> list[list[_Hyp]]:
    """Turns each utterance's top-k (hypothesis slot x token) candidates into its next beam, merging
    candidates that spell the same sequence by log-adding their scores."""
    new_hyps = []
    offset = 0
    for beam_hyps, scores, indexes in zip(hyps, top_scores, top_index):
        merged: dict[tuple[int, ...], _Hyp] = {}
        for score, index in zip(scores, indexes):
            slot, token = divmod(index, vocab_size)
            if slot >= len(beam_hyps):  # padding: this utterance has fewer candidates than k
                continue
            parent = beam_hyps[slot]
            if token == blank_id:
                ys, timestamps, appended = parent.ys, parent.timestamps, None
            else:
                ys, timestamps, appended = parent.ys + (token,), parent.timestamps + (t,), token
            if ys in merged:
                merged[ys].score = _logaddexp(merged[ys].score, score)
            else:
                merged[ys] = _Hyp(ys, score, timestamps, offset + slot, appended)
        new_hyps.append(list(merged.values()))
        offset += len(beam_hyps)
    return new_hyps
