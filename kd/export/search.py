"""Greedy search and modified beam search in numpy over the onnxruntime graphs of a transducer.

The same searches as :mod:`kd.decode.greedy` and :mod:`kd.decode.beam_search` (icefall's
``greedy_search_batch`` and ``modified_beam_search``, each with ``max_sym_per_frame``), so transcripts match
the PyTorch decode's. Both are frame-synchronous objects: :meth:`advance` consumes the next encoder frames
of every utterance, so feeding a streaming encoder's chunks one by one gives the result of feeding the whole
encoder output at once.
Encoder frames arrive already projected by the joiner's ``encoder_proj`` (the ONNX encoder's output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kd.export.onnx_model import DecoderState, OnnxTransducer


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (N, V) logits, in their precision."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check(encoder_out: np.ndarray, encoder_out_lens: np.ndarray, batch_size: int) -> None:
    if encoder_out.ndim != 3 or encoder_out.shape[0] != batch_size or encoder_out_lens.shape != (batch_size,):
        raise ValueError(
            f"expected encoder_out (B={batch_size}, T, J) and encoder_out_lens (B,), got "
            f"{encoder_out.shape} and {encoder_out_lens.shape}"
        )
    if encoder_out_lens.size and int(encoder_out_lens.max()) > encoder_out.shape[1]:
        raise ValueError(
            f"encoder_out_lens max {int(encoder_out_lens.max())} exceeds {encoder_out.shape[1]} frames"
        )


class GreedySearch:
    """Batched greedy search: per frame, every utterance with frames left takes the joiner's argmax; up to
    ``max_sym_per_frame`` symbols per frame, the decoder stepped only for utterances that emitted one.

    Args:
        model: the onnxruntime transducer.
        batch_size: utterances B.
        max_sym_per_frame: symbols emitted at most per frame (>= 1).
    """

    def __init__(self, model: OnnxTransducer, batch_size: int, max_sym_per_frame: int = 1) -> None:
        if max_sym_per_frame < 1:
            raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
        self.model = model
        self.decoder = model.decoder
        self.blank_id = model.metadata.blank_id
        self.max_sym_per_frame = max_sym_per_frame
        self.batch_size = batch_size
        blanks = np.full(batch_size, self.blank_id, dtype=np.int64)
        self.decoder_out, self.state = self.decoder.step(
            blanks, self.decoder.init_state(batch_size)
        )  # (B, J)
        self.hyps: list[list[int]] = [[] for _ in range(batch_size)]

    def advance(self, encoder_out: np.ndarray, encoder_out_lens: np.ndarray) -> None:
        """encoder_out: (B, T, J) the next frames; encoder_out_lens: (B,) valid frames of each (0: ended)."""
        _check(encoder_out, encoder_out_lens, self.batch_size)
        for t in range(int(encoder_out_lens.max(initial=0))):
            rows = np.nonzero(encoder_out_lens > t)[0]
            for _ in range(self.max_sym_per_frame):
                logits = self.model.join(encoder_out[rows, t], self.decoder_out[rows])
                tokens = logits.argmax(axis=-1)
                emitted = tokens != self.blank_id
                if not emitted.any():
                    break
                rows, tokens = rows[emitted], tokens[emitted]
                for row, token in zip(rows.tolist(), tokens.tolist()):
                    self.hyps[row].append(token)
                self._step(rows, tokens)

    def _step(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        """Steps the decoder for ``rows`` (M,) on their new ``tokens`` (M,); the other rows keep theirs."""
        out, stepped = self.decoder.step(tokens, self.decoder.select_state(self.state, rows))
        self.decoder_out[rows] = out
        source = np.arange(self.batch_size)
        source[rows] = self.batch_size + np.arange(rows.size)
        self.state = self.decoder.select_state(self.decoder.cat_states(self.state, stepped), source)

    def results(self) -> list[list[int]]:
        """Token ids per utterance so far."""
        return [list(h) for h in self.hyps]


@dataclass
class _Hyp:
    ys: tuple[int, ...]
    score: float
    decoder_out: np.ndarray  # (J,) the decoder's (projected) output after ys
    state: DecoderState  # the decoder state after ys, one row


class ModifiedBeamSearch:
    """Modified beam search, batched over utterances and hypotheses.

    Each frame, every hypothesis is extended by every token (blank keeps the sequence), an utterance keeps
    its ``beam`` best candidates, and candidates spelling the same sequence are merged by adding their
    probabilities; a hypothesis that emitted a token may emit another on the same frame, up to
    ``max_sym_per_frame``. Scores are float32 sums of log-probabilities, as in
    :func:`kd.decode.modified_beam_search`, whose steps this mirrors.

    Args:
        model: the onnxruntime transducer.
        batch_size: utterances B.
        beam: hypotheses kept per utterance (>= 1).
        max_sym_per_frame: symbols a hypothesis may emit on one frame (>= 1).
    """

    def __init__(
        self, model: OnnxTransducer, batch_size: int, beam: int = 4, max_sym_per_frame: int = 1
    ) -> None:
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        if max_sym_per_frame < 1:
            raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
        self.model = model
        self.decoder = model.decoder
        self.blank_id = model.metadata.blank_id
        self.beam = beam
        self.max_sym_per_frame = max_sym_per_frame
        self.batch_size = batch_size
        out, state = self.decoder.step(np.array([self.blank_id], dtype=np.int64), self.decoder.init_state(1))
        self.beams = [[_Hyp((), 0.0, out[0], state)] for _ in range(batch_size)]

    def advance(self, encoder_out: np.ndarray, encoder_out_lens: np.ndarray) -> None:
        """encoder_out: (B, T, J) the next frames; encoder_out_lens: (B,) valid frames of each (0: ended)."""
        _check(encoder_out, encoder_out_lens, self.batch_size)
        for t in range(int(encoder_out_lens.max(initial=0))):
            active = np.nonzero(encoder_out_lens > t)[0].tolist()
            # per utterance: hypotheses that ended frame t (blank, or max_sym_per_frame symbols), by sequence
            done: dict[int, dict[tuple[int, ...], _Hyp]] = {b: {} for b in active}
            frontier = {b: self.beams[b] for b in active}
            for emitted in range(self.max_sym_per_frame):
                last = emitted == self.max_sym_per_frame - 1
                frontier = self._expand(frontier, done, encoder_out[:, t], last)
                for b, hyps in frontier.items():  # as kd.decode.beam_search._prune
                    if len(done[b]) >= self.beam and hyps:
                        floor = sorted((h.score for h in done[b].values()), reverse=True)[self.beam - 1]
                        frontier[b] = [h for h in hyps if h.score > floor]
                if not any(frontier.values()):
                    break
            for b in active:
                self.beams[b] = sorted(done[b].values(), key=lambda h: -h.score)[: self.beam]

    def _expand(
        self,
        frontier: dict[int, list[_Hyp]],
        done: dict[int, dict[tuple[int, ...], _Hyp]],
        frame: np.ndarray,
        last: bool,
    ) -> dict[int, list[_Hyp]]:
        """One symbol for every frontier hypothesis on ``frame`` (B, J): blank candidates (and, when
        ``last``, all) go to ``done``; returns the others, their decoder stepped."""
        utts = [b for b, hyps in frontier.items() if hyps]
        hyps = [h for b in utts for h in frontier[b]]
        counts = [len(frontier[b]) for b in utts]
        enc = np.repeat(frame[utts], counts, axis=0)  # (H, J)
        dec = np.stack([h.decoder_out for h in hyps])  # (H, J)
        scores = np.array([h.score for h in hyps], dtype=np.float32)
        candidates = log_softmax(self.model.join(enc, dec)) + scores[:, None]  # (H, V)
        vocab_size = candidates.shape[1]
        extended: list[tuple[_Hyp, int]] = []  # (new hypothesis, its parent's row in hyps)
        next_frontier: dict[int, list[_Hyp]] = {b: [] for b in frontier}
        offset = 0
        for b, count in zip(utts, counts):
            flat = candidates[offset : offset + count].reshape(-1)
            top = np.argsort(-flat, kind="stable")[: min(self.beam, flat.size)]
            emitting: dict[tuple[int, ...], _Hyp] = {}
            for index in top.tolist():
                slot, token = divmod(index, vocab_size)
                parent, score = hyps[offset + slot], float(flat[index])
                if token == self.blank_id:
                    _merge(done[b], _Hyp(parent.ys, score, parent.decoder_out, parent.state))
                    continue
                # The decoder output after the new token is filled in by _step_decoder.
                hyp = _Hyp(parent.ys + (token,), score, parent.decoder_out, parent.state)
                extended.append((hyp, offset + slot))
                _merge(done[b] if last else emitting, hyp)
            next_frontier[b] = list(emitting.values())
            offset += count
        self._step_decoder(extended, hyps)
        return next_frontier

    def _step_decoder(self, extended: list[tuple[_Hyp, int]], hyps: list[_Hyp]) -> None:
        """Steps the decoder once for every hypothesis that appended a token."""
        if not extended:
            return
        state = hyps[extended[0][1]].state
        for _, parent in extended[1:]:
            state = self.decoder.cat_states(state, hyps[parent].state)
        tokens = np.array([h.ys[-1] for h, _ in extended], dtype=np.int64)
        out, stepped = self.decoder.step(tokens, state)
        for i, (h, _) in enumerate(extended):
            h.decoder_out = out[i]
            h.state = self.decoder.select_state(stepped, np.array([i]))

    def results(self) -> list[list[int]]:
        """The best hypothesis per utterance so far."""
        return [list(max(beam, key=lambda h: h.score).ys) for beam in self.beams]


def _merge(into: dict[tuple[int, ...], _Hyp], hyp: _Hyp) -> None:
    """Adds ``hyp`` to ``into``, log-adding its score to a hypothesis spelling the same sequence."""
    same = into.get(hyp.ys)
    if same is None:
        into[hyp.ys] = hyp
    else:
        same.score = _logaddexp(same.score, hyp.score)


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))
