"""Batched greedy search for transducers (icefall's ``greedy_search_batch``, on the decoder step API)."""

from __future__ import annotations

import torch
from torch import nn

from kd.decode.results import DecodingResults, check_encoder_out, package
from kd.decode.states import StateBatcher


class GreedySearch:
    """Frame-synchronous greedy search over a batch whose state lives between calls.

    Each frame, every utterance that still has frames takes the argmax of the joiner; a non-blank symbol is
    appended and the decoder stepped for that utterance only, and up to ``max_sym_per_frame`` symbols may
    be emitted before moving on. Because the search is frame-synchronous, feeding the encoder output in
    pieces (streaming) gives the same result as feeding it whole.

    Args:
        model: a transducer with ``decoder`` (step API) and ``joiner`` (``encoder_proj``, ``decoder_proj``).
        batch_size: number of utterances B.
        device: where the decoder state lives.
        max_sym_per_frame: symbols emitted at most per frame (>= 1).
        blank_penalty: subtracted from the blank logit of the joiner before the log-softmax (icefall's
            ``blank_penalty``): a positive value makes blank less likely, so a deletion-prone model emits
            more symbols; the scores are those of the penalised distribution. 0 is the plain search.
    """

    @torch.inference_mode()
    def __init__(
        self,
        model: nn.Module,
        batch_size: int,
        device: torch.device | str,
        max_sym_per_frame: int = 1,
        blank_penalty: float = 0.0,
    ) -> None:
        if max_sym_per_frame < 1:
            raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
        self.decoder = model.decoder
        self.joiner = model.joiner
        self.blank_id = self.decoder.blank_id
        self.max_sym_per_frame = max_sym_per_frame
        self.blank_penalty = blank_penalty
        self.states = StateBatcher(self.decoder, device)
        blanks = torch.full((batch_size,), self.blank_id, dtype=torch.int64, device=device)
        decoder_out, self.state = self.decoder.step(blanks, self.decoder.init_state(batch_size, device))
        self.decoder_out = self.joiner.decoder_proj(decoder_out)  # (B, J)
        self.hyps: list[list[int]] = [[] for _ in range(batch_size)]
        self.timestamps: list[list[int]] = [[] for _ in range(batch_size)]
        self.scores = torch.zeros(batch_size, device=device)
        self.frames_done = [0] * batch_size

    @torch.inference_mode()
    def advance(self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor) -> None:
        """Consumes the next frames of every utterance.

        Args:
            encoder_out: (B, T, J) encoder output already projected by ``joiner.encoder_proj``.
            encoder_out_lens: (B,) valid frames per utterance in this piece (0 for an utterance that ended).
        """
        check_encoder_out(encoder_out, encoder_out_lens)
        lens = encoder_out_lens.to(encoder_out.device)
        max_len = int(lens.max()) if lens.numel() else 0
        for t in range(max_len):
            rows = torch.nonzero(lens > t).squeeze(1)
            for _ in range(self.max_sym_per_frame):
                logits = self.joiner(encoder_out[rows, t], self.decoder_out[rows], project_input=False)
                if self.blank_penalty != 0.0:
                    logits[:, self.blank_id] -= self.blank_penalty
                best_logp, tokens = logits.float().log_softmax(dim=-1).max(dim=-1)
                self.scores[rows] += best_logp
                emitted = tokens != self.blank_id
                if not bool(emitted.any()):
                    break
                rows, tokens = rows[emitted], tokens[emitted]
                for row, token in zip(rows.tolist(), tokens.tolist()):
                    self.hyps[row].append(token)
                    self.timestamps[row].append(self.frames_done[row] + t)
                self._step(rows, tokens)
        for row, n in enumerate(lens.tolist()):
            self.frames_done[row] += n

    def _step(self, rows: torch.Tensor, tokens: torch.Tensor) -> None:
        """Steps the decoder for ``rows`` (M,) (ascending) on their new ``tokens`` (M,)."""
        batch_size = self.decoder_out.size(0)
        decoder_out, stepped = self.decoder.step(tokens, self.decoder.select_state(self.state, rows))
        self.decoder_out[rows] = self.joiner.decoder_proj(decoder_out).to(self.decoder_out.dtype)
        if rows.numel() == batch_size:
            self.state = stepped
            return
        source = torch.arange(batch_size, device=rows.device)
        source[rows] = batch_size + torch.arange(rows.numel(), device=rows.device)
        self.state = self.states.merge(self.state, stepped, source)

    def results(
        self, return_timestamps: bool = False, return_scores: bool = False
    ) -> list[list[int]] | DecodingResults:
        """The hypotheses so far (see :class:`DecodingResults`)."""
        return package(
            [list(h) for h in self.hyps],
            [list(t) for t in self.timestamps],
            self.scores.tolist(),
            return_timestamps,
            return_scores,
        )


@torch.inference_mode()
def greedy_search_batch(
    model: nn.Module,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    max_sym_per_frame: int = 1,
    blank_penalty: float = 0.0,
    return_timestamps: bool = False,
    return_scores: bool = False,
) -> list[list[int]] | DecodingResults:
    """Greedy search over a batch of utterances of different lengths.

    Args:
        model: a transducer (``decoder`` with the step API, ``joiner``).
        encoder_out: (B, T, D_enc) raw encoder output; frames past an utterance's length are ignored.
        encoder_out_lens: (B,) valid frames per utterance.
        max_sym_per_frame: symbols emitted at most per frame.
        blank_penalty: subtracted from the blank logit before the log-softmax (see :class:`GreedySearch`).
        return_timestamps: also return the frame of each emitted token.
        return_scores: also return the path log-probability (the sum of the chosen symbols' log-probs,
            blanks included).
    Returns:
        token ids per utterance in input order, or :class:`DecodingResults` when timestamps or scores are
        asked for.
    """
    check_encoder_out(encoder_out, encoder_out_lens)
    search = GreedySearch(model, encoder_out.size(0), encoder_out.device, max_sym_per_frame, blank_penalty)
    search.advance(model.joiner.encoder_proj(encoder_out), encoder_out_lens)
    return search.results(return_timestamps, return_scores)
