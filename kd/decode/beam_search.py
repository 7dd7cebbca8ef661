"""Modified beam search for transducers (icefall's), batched over utterances and hypotheses.

Each frame, every hypothesis of an utterance is extended by every vocabulary entry (blank keeps the
sequence), the best ``beam`` of the hypotheses x vocabulary candidates survive, and candidates that spell the
same token sequence are merged by adding their probabilities. icefall's version emits at most one symbol per
frame; ``max_sym_per_frame`` > 1 lets a hypothesis that just emitted one be extended again on the same frame
(up to that many symbols, as greedy search's option of the same name), for models whose tokens come faster
than their encoder frames, e.g. letters at 40 ms. An optional language model with the decoder's step API is
fused shallowly: non-blank candidates gain ``lm_scale`` times the LM's log-probability of the token, before
the top-k, so the LM shapes the beam. The LM's log-probabilities are negative, so fusion alone favours blank;
``blank_penalty`` (subtracted from the joiner's blank logit before the log-softmax, as icefall's) offsets
that.
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
    score: float  # log-sum of the scores of the alignments merged into it
    timestamps: tuple[int, ...]  # of its best alignment
    row: int  # its row in the steppers (decoder output and state after ys)
    best: float  # score of its best alignment

    @staticmethod
    def start(row: int) -> _Hyp:
        return _Hyp(ys=(), score=0.0, timestamps=(), row=row, best=0.0)


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _merge(into: dict[tuple[int, ...], _Hyp], hyp: _Hyp) -> None:
    """Adds ``hyp`` to ``into``, log-adding its score to a hypothesis spelling the same sequence."""
    same = into.get(hyp.ys)
    if same is None:
        into[hyp.ys] = hyp
        return
    same.score = _logaddexp(same.score, hyp.score)
    if hyp.best > same.best:
        same.best, same.timestamps = hyp.best, hyp.timestamps


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

    def append(self, parents: torch.Tensor, tokens: torch.Tensor) -> None:
        """Adds rows after the existing R: row R + e is row ``parents[e]`` stepped with ``tokens[e]``."""
        out, stepped = self.module.step(tokens, self.module.select_state(self.state, parents))
        self.state = self.batcher.cat(self.state, stepped)
        self.out = torch.cat([self.out, self.project(out).to(self.out.dtype)])


@torch.inference_mode()
def modified_beam_search(
    model: nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam: int = 4,
    lm: Any = None,
    lm_scale: float = 0.0,
    blank_penalty: float = 0.0,
    max_sym_per_frame: int = 1,
    return_timestamps: bool = False,
    return_scores: bool = False,
) -> list[list[int]] | DecodingResults:
    """Modified beam search over a batch of utterances of different lengths.

    Args:
        model: a transducer (``decoder`` with the step API, ``joiner``).
        encoder_out: (B, T, D_enc) raw encoder output; frames past an utterance's length are ignored.
        encoder_out_lens: (B,) valid frames per utterance.
        beam: hypotheses kept per utterance (>= 1); beam 1 is greedy search with the same
            ``max_sym_per_frame``.
        lm: optional language model with ``init_state``, ``step(tokens (N,), state) -> (log_probs (N, V),
            state)`` and ``select_state``; ``step`` returns log-probabilities of the next token.
        lm_scale: weight of the LM log-probabilities (shallow fusion).
        blank_penalty: subtracted from the blank logit of the joiner before the log-softmax: a positive
            value makes blank less likely and hypotheses longer; the scores are those of the penalised
            distribution. 0 is the plain search.
        max_sym_per_frame: symbols a hypothesis may emit on one frame (>= 1; 1 is icefall's search). The
            frame ends for a hypothesis when it takes blank or has emitted that many.
        return_timestamps: also return the frame of each token of the best hypothesis (of its best
            alignment).
        return_scores: also return the best hypothesis' score: the log-sum of the fused path scores of the
            alignments merged into it.
    Returns:
        the best hypothesis per utterance in input order, or :class:`DecodingResults` when timestamps or
        scores are asked for.
    """
    check_encoder_out(encoder_out, encoder_out_lens)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if max_sym_per_frame < 1:
        raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
    device = encoder_out.device
    batch_size = encoder_out.size(0)
    blank_id = model.decoder.blank_id
    joiner = model.joiner
    encoder_out = joiner.encoder_proj(encoder_out)  # (B, T, J)
    lens = encoder_out_lens.tolist()

    decoder = _Stepper(model.decoder, batch_size, blank_id, device, joiner.decoder_proj)
    fusion = _Stepper(lm, batch_size, blank_id, device, lambda x: x) if lm is not None else None
    steppers = [s for s in (decoder, fusion) if s is not None]

    def joint(enc: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(H, V) fused log-probabilities of the next symbol for encoder frames ``enc`` (H, J) and the
        steppers' ``rows`` (H,)."""
        logits = joiner(enc, decoder.out[rows], project_input=False)
        if blank_penalty != 0.0:
            logits[:, blank_id] -= blank_penalty
        log_probs = logits.float().log_softmax(dim=-1)
        if fusion is not None:
            lm_part = lm_scale * fusion.out[rows].float()
            lm_part[:, blank_id] = 0.0
            log_probs = log_probs + lm_part
        return log_probs

    # hyps[i] is the beam of the i-th still-active utterance; at the start of a frame, flattened, they are
    # the steppers' rows in order.
    active = [b for b in range(batch_size) if lens[b] > 0]
    hyps = [[_Hyp.start(i)] for i in range(len(active))]
    finished = {b: [_Hyp.start(0)] for b in range(batch_size) if lens[b] == 0}
    keep = torch.tensor(active, dtype=torch.int64, device=device)
    for stepper in steppers:
        stepper.keep(keep)

    for t in range(max(lens, default=0)):
        if any(lens[b] == t for b in active):
            active, hyps = _retire(active, hyps, lens, t, finished)
            _compact(hyps, steppers, device)
        enc = encoder_out[torch.tensor(active, device=device), t]  # (U, J)
        # Hypotheses that ended the frame (blank, or max_sym_per_frame symbols) and those that emitted a
        # symbol on it and may emit another.
        done: list[dict[tuple[int, ...], _Hyp]] = [{} for _ in hyps]
        frontier = hyps
        for emitted in range(max_sym_per_frame):
            last = emitted == max_sym_per_frame - 1
            frontier = _expand(frontier, done, enc, joint, beam, blank_id, t, last, steppers, device)
            _prune(frontier, done, beam)
            if not any(frontier):
                break
        hyps = [sorted(d.values(), key=lambda h: -h.score)[:beam] for d in done]
        _compact(hyps, steppers, device)

    finished.update(zip(active, hyps))
    best = [max(finished[b], key=lambda h: h.score) for b in range(batch_size)]
    return package(
        [list(h.ys) for h in best],
        [list(h.timestamps) for h in best],
        [h.score for h in best],
        return_timestamps,
        return_scores,
    )


def _expand(
    frontier: list[list[_Hyp]],
    done: list[dict[tuple[int, ...], _Hyp]],
    enc: torch.Tensor,
    joint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    beam: int,
    blank_id: int,
    t: int,
    last: bool,
    steppers: list[_Stepper],
    device: torch.device,
) -> list[list[_Hyp]]:
    """One symbol for every hypothesis of ``frontier`` on frame ``t``: each utterance keeps its top ``beam``
    (hypothesis x symbol) candidates; blank ones (and, when ``last``, all of them) are merged into ``done``,
    the others returned as the next frontier, their decoder and LM rows appended to the steppers.

    Args:
        frontier: per utterance, the hypotheses still emitting on frame t.
        done: per utterance, the hypotheses that ended frame t, by sequence.
        enc: (U, J) projected encoder frame t of each utterance.
    """
    counts = torch.tensor([len(h) for h in frontier], device=device)
    num_utts, max_count = len(frontier), int(counts.max())
    flat = [h for beam_hyps in frontier for h in beam_hyps]
    rows = torch.tensor([h.row for h in flat], dtype=torch.int64, device=device)
    scores = torch.tensor([h.score for h in flat], device=device)
    candidates = joint(enc.repeat_interleave(counts, dim=0), rows) + scores.unsqueeze(1)  # (H, V)
    vocab_size = candidates.size(1)

    # Lay the candidates out as (utterances, max_count * V) so one top-k serves the whole batch.
    utt = torch.repeat_interleave(torch.arange(num_utts, device=device), counts)
    slot = torch.arange(utt.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[utt]
    padded = candidates.new_full((num_utts, max_count, vocab_size), float("-inf"))
    padded[utt, slot] = candidates
    k = min(beam, max_count * vocab_size)
    top_scores, top_index = padded.view(num_utts, -1).topk(k, dim=1)

    num_rows = steppers[0].out.size(0)
    parents: list[int] = []
    tokens: list[int] = []
    next_frontier: list[list[_Hyp]] = []
    for beam_hyps, utt_done, utt_scores, utt_index in zip(
        frontier, done, top_scores.tolist(), top_index.tolist()
    ):
        emitting: dict[tuple[int, ...], _Hyp] = {}
        for score, index in zip(utt_scores, utt_index):
            slot_, token = divmod(index, vocab_size)
            if slot_ >= len(beam_hyps):  # padding: this utterance has fewer candidates than k
                continue
            parent = beam_hyps[slot_]
            best = parent.best - parent.score + score  # the parent's best alignment, extended
            if token == blank_id:
                _merge(utt_done, _Hyp(parent.ys, score, parent.timestamps, parent.row, best))
                continue
            hyp = _Hyp(parent.ys + (token,), score, parent.timestamps + (t,), num_rows + len(tokens), best)
            parents.append(parent.row)
            tokens.append(token)
            _merge(utt_done if last else emitting, hyp)
        next_frontier.append(list(emitting.values()))
    if tokens:
        parents_t = torch.tensor(parents, dtype=torch.int64, device=device)
        tokens_t = torch.tensor(tokens, dtype=torch.int64, device=device)
        for stepper in steppers:
            stepper.append(parents_t, tokens_t)
    return next_frontier


def _prune(frontier: list[list[_Hyp]], done: list[dict[tuple[int, ...], _Hyp]], beam: int) -> None:
    """Drops frontier hypotheses already below the ``beam``-th finished one of their utterance: scores only
    fall with more symbols, so none of their extensions could enter the beam on its own (one could still
    have merged into a finished hypothesis of the same tokens; like any beam, this gives up that mass)."""
    for i, utt_done in enumerate(done):
        if len(utt_done) >= beam and frontier[i]:
            floor = sorted((h.score for h in utt_done.values()), reverse=True)[beam - 1]
            frontier[i] = [h for h in frontier[i] if h.score > floor]


def _compact(hyps: list[list[_Hyp]], steppers: list[_Stepper], device: torch.device) -> None:
    """Keeps only the steppers' rows of ``hyps`` and renumbers them in flat order."""
    flat = [h for beam_hyps in hyps for h in beam_hyps]
    rows = torch.tensor([h.row for h in flat], dtype=torch.int64, device=device)
    for stepper in steppers:
        stepper.keep(rows)
    for i, h in enumerate(flat):
        h.row = i


def _retire(
    active: list[int], hyps: list[list[_Hyp]], lens: list[int], t: int, finished: dict[int, list[_Hyp]]
) -> tuple[list[int], list[list[_Hyp]]]:
    """Moves the beams of utterances that end at frame ``t`` into ``finished``; returns the remaining
    utterances and their beams."""
    still_active, still_hyps = [], []
    for b, beam_hyps in zip(active, hyps):
        if lens[b] == t:
            finished[b] = beam_hyps
        else:
            still_active.append(b)
            still_hyps.append(beam_hyps)
    return still_active, still_hyps
