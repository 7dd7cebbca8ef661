"""The teacher's targets for one batch of utterances, as the arrays that get stored.

Every array is per utterance, over its own frames t < T (teacher encoder frames) and label rows u <= U,
in storage dtypes: log-probs fp16, class ids and indexes in the smallest unsigned integer type that holds
them (:func:`kd.targets.storage.index_dtype`). Top-k targets keep the k most likely classes of the
teacher's softmax at temperature 1 and the log of the remaining mass (kd.losses.topk.topk_from_logits).

    pruned:     start (T,): the first u of each frame's prune window, from the teacher's smoothed simple loss
                (ranges[t, s] = start[t] + s, s < S = s_range); logprobs, ids (T, S, k) and rest (T, S) of
                the real joiner at those nodes. Computed per utterance, so the ranges do not depend on the
                batch; they equal the teacher's own (B = 1) forward, padded to S rows when U + 1 < S (nodes
                with u > U then hold zeros).
    pxpy:       px (U, T+1) = log P(y_{u+1} | t, u) (column T is -inf: k2's regular layout), py (U+1, T)
                = log P(blank | t, u), over the full lattice.
    one_best:   nodes (N, 2) (t, u) of the teacher's one-best path (labelled: its greedy walk over the
                reference lattice, kd.losses.one_best; unlabelled: the alignment of its best beam-search
                hypothesis, T + U nodes), with logprobs, ids (N, k) and rest (N,) at each node.
    enc_logits: logprobs, ids (T, k) and rest (T,) of the joiner on the encoder alone (CoDERT).
    hyp:        the best modified-beam-search hypothesis (tokens, frame of each token, score) of an unlabelled
                cut (labelled cuts are not searched), optionally with an LM fused in and a blank penalty
                (the score then includes the LM's weighted log-probabilities and the penalty). Neither
                touches the stored log-probs of the other types: they are the teacher's own posteriors on
                the lattice of that hypothesis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd import losses
from kd.decode.beam_search import modified_beam_search
from kd.losses.one_best import gather_node_logits, one_best_path_from_joiner
from kd.losses.topk import TopK, topk_from_logits
from kd.targets.config import TargetConfig
from kd.targets.manifest import GenerationStats
from kd.targets.storage import index_dtype

# bounds the (frames, U+1, V) full-lattice logits that pxpy joins at once (8 Mi values: 32 MiB in float32)
_PXPY_LOGITS_PER_CHUNK = 1 << 23


@dataclass
class Hypothesis:
    """The teacher's best hypothesis: token ids, the frame of each, and its search score."""

    tokens: list[int]
    timestamps: list[int]
    score: float


@dataclass
class CutTargets:
    """One utterance's targets.

    Attributes:
        frames: teacher encoder frames T.
        tokens: the labels the lattice targets are defined on (the reference, or the hypothesis).
        arrays: ``{type: {field: array}}`` for the array types (see the module docstring).
        hyp: the hypothesis, when one was searched.
    """

    frames: int
    tokens: list[int]
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    hyp: Hypothesis | None = None


def lattice_problem(frames: int, num_tokens: int, prune_range: int, rnnt_type: str = "regular") -> str | None:
    """Why an utterance has no usable lattice, or None: no encoder frame, more tokens than a pruned lattice
    of ``prune_range`` rows per frame can emit (s_range - 1 per frame), or, in the modified topology (one
    symbol per frame), more tokens than frames."""
    if frames < 1:
        return "no encoder frame (fewer than 7 feature frames)"
    if num_tokens > (prune_range - 1) * frames:
        return (
            f"{num_tokens} tokens for {frames} frames (at most {prune_range - 1} per frame fit the lattice)"
        )
    if rnnt_type == "modified" and num_tokens > frames:
        return f"{num_tokens} tokens for {frames} frames (the modified topology emits one per frame)"
    return None


@contextmanager
def timed(stats: GenerationStats | None, part: str, device: torch.device) -> Iterator[None]:
    """Adds the wall time of the block to ``stats.seconds[part]`` (waiting for the GPU first)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if stats is not None:
        stats.add_time(part, time.perf_counter() - start)


@torch.no_grad()
def compute_targets(
    model: nn.Module,
    features: Tensor,
    feature_lens: Tensor,
    labels: list[list[int] | None],
    config: TargetConfig,
    stats: GenerationStats | None = None,
    lm: nn.Module | None = None,
    lm_scale: float = 0.0,
) -> list[CutTargets]:
    """The targets of ``config.types`` for a batch.

    Args:
        model: the teacher transducer (eval mode), with ``encoder``, ``decoder``, ``joiner`` and the simple
            projections ``simple_am_proj`` / ``simple_lm_proj``.
        features: (B, F_max, 80). feature_lens: (B,) int64, each giving >= 1 encoder frame.
        labels: per utterance its reference token ids, or None when it is unlabelled (its hypothesis then
            stands in for the reference). Each must fit its lattice (:func:`lattice_problem`).
        config: the types and settings.
        stats: gets the compute time of each part (``encoder``, ``search``, each type).
        lm: an LM with the step API (kd.lm) fused into the hypothesis search with weight ``lm_scale``;
            None searches with the teacher alone.

    Returns:
        B :class:`CutTargets`, in batch order.
    """
    if len(labels) != features.size(0):
        raise ValueError(f"{len(labels)} label lists for a batch of {features.size(0)} utterances")
    device = features.device
    with timed(stats, "encoder", device):
        encoder_out, encoder_out_lens = model.encoder(features, feature_lens)
    frames = encoder_out_lens.tolist()

    # Only unlabelled cuts are searched: their hypothesis is their transcript (hard targets) and the label
    # sequence of their lattice targets; a labelled cut's reference takes both roles.
    search = [b for b, y in enumerate(labels) if y is None and ("hyp" in config.types or config.needs_tokens)]
    hyps: dict[int, Hypothesis] = {}
    if search:
        with timed(stats, "search", device):
            rows = torch.tensor(search, device=device)
            found = modified_beam_search(
                model,
                encoder_out[rows],
                encoder_out_lens[rows],
                beam=config.beam,
                lm=lm,
                lm_scale=lm_scale,
                blank_penalty=config.blank_penalty,
                max_sym_per_frame=config.max_sym_per_frame,
                return_timestamps=True,
                return_scores=True,
            )
        for b, ys, ts, score in zip(search, found.hyps, found.timestamps, found.scores):
            hyps[b] = Hypothesis(ys, ts, score)
    tokens = [y if y is not None else (hyps[b].tokens if b in hyps else []) for b, y in enumerate(labels)]
    out = [CutTargets(frames[b], tokens[b], hyp=hyps.get(b)) for b in range(len(labels))]

    if "enc_logits" in config.types:
        with timed(stats, "enc_logits", device):
            top = topk_from_logits(model.joiner.encoder_logits(encoder_out), config.topk)
            for b, cut in enumerate(out):
                cut.arrays["enc_logits"] = _topk_arrays(_slice(top, b, frames[b]), model.vocab_size)
    if "pruned" in config.types:
        with timed(stats, "pruned", device):
            for b, cut in enumerate(out):
                cut.arrays["pruned"] = pruned_targets(model, encoder_out[b, : frames[b]], tokens[b], config)
    if "pxpy" not in config.types and "one_best" not in config.types:
        return out

    symbols, symbol_lens = model.labels_to_symbols(tokens, device)
    decoder_out = model.decoder(F.pad(symbols, (1, 0), value=model.blank_id), symbol_lens + 1)
    if "pxpy" in config.types:
        with timed(stats, "pxpy", device):
            for b, cut in enumerate(out):
                U = len(tokens[b])
                cut.arrays["pxpy"] = pxpy_targets(
                    model, encoder_out[b, : frames[b]], decoder_out[b, : U + 1], symbols[b, :U]
                )
    if "one_best" in config.types:
        with timed(stats, "one_best", device):
            paths = one_best_targets(
                model, encoder_out, encoder_out_lens, decoder_out, symbol_lens, labels, hyps, config.topk
            )
            for cut, arrays in zip(out, paths):
                cut.arrays["one_best"] = arrays
    return out


def pruned_targets(model: nn.Module, encoder_out: Tensor, tokens: list[int], config: TargetConfig) -> dict:
    """The pruned-lattice targets of one utterance.

    Args:
        encoder_out: (T, D_enc) its encoder output. tokens: its U labels.

    Returns:
        start (T,), logprobs (T, S, k), ids (T, S, k), rest (T, S); S = config.prune_range.
    """
    T, U, S = encoder_out.size(0), len(tokens), config.prune_range
    device = encoder_out.device
    # At least S - 1 label rows, so that every utterance's window has S rows (k2 would narrow it to U + 1).
    symbols = torch.zeros(1, max(U, S - 1), dtype=torch.int64, device=device)
    symbols[0, :U] = torch.as_tensor(tokens, dtype=torch.int64, device=device)
    decoder_out = model.decoder(
        F.pad(symbols, (1, 0), value=model.blank_id), torch.tensor([U + 1], device=device)
    )
    boundary = torch.tensor([[0, 0, U, T]], dtype=torch.int64, device=device)
    _, (px_grad, py_grad) = losses.rnnt_loss_smoothed(
        lm=model.simple_lm_proj(decoder_out).float(),
        am=model.simple_am_proj(encoder_out.unsqueeze(0)).float(),
        symbols=symbols,
        termination_symbol=model.blank_id,
        lm_only_scale=config.lm_scale,
        am_only_scale=config.am_scale,
        boundary=boundary,
        rnnt_type=config.rnnt_type,
        reduction="sum",
        return_grad=True,
    )
    ranges = losses.get_rnnt_prune_ranges(px_grad, py_grad, boundary, S)  # (1, T, S)
    logits = model.pruned_logits(encoder_out.unsqueeze(0), decoder_out, ranges)[0]  # (T, S, V)
    arrays = _topk_arrays(topk_from_logits(logits, config.topk), model.vocab_size, valid=ranges[0] <= U)
    start = ranges[0, :, 0].cpu().numpy()
    return {"start": start.astype(index_dtype(int(start.max(initial=0)))), **arrays}


def pxpy_targets(model: nn.Module, encoder_out: Tensor, decoder_out: Tensor, symbols: Tensor) -> dict:
    """px (U, T+1) and py (U+1, T) of one utterance over its full lattice.

    Args:
        encoder_out: (T, D_enc). decoder_out: (U+1, D_dec). symbols: int64 (U,).
    """
    T, U = encoder_out.size(0), symbols.numel()
    am = model.joiner.encoder_proj(encoder_out)  # (T, J)
    lm = model.joiner.decoder_proj(decoder_out)  # (U+1, J)
    chunk = max(1, _PXPY_LOGITS_PER_CHUNK // ((U + 1) * model.vocab_size))
    blank, symbol = [], []
    for t0 in range(0, T, chunk):
        logits = model.joiner(am[t0 : t0 + chunk, None], lm[None], project_input=False)  # (t, U+1, V)
        b, s = losses.node_logprobs(logits.unsqueeze(0), symbols.unsqueeze(0), model.blank_id)
        blank.append(b[0])
        symbol.append(s[0])
    py = torch.cat(blank).t()  # (U+1, T)
    px = F.pad(torch.cat(symbol)[:, :U].t(), (0, 1), value=float("-inf"))  # (U, T+1)
    return {"px": _half(px), "py": _half(py)}


def one_best_targets(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    decoder_out: Tensor,
    symbol_lens: Tensor,
    labels: list[list[int] | None],
    hyps: dict[int, Hypothesis],
    topk: int,
) -> list[dict]:
    """The one-best path of each utterance (the greedy walk for labelled ones, the best hypothesis'
    alignment for unlabelled ones) and the teacher's top-k at its nodes.

    Args:
        encoder_out: (B, T, D_enc). encoder_out_lens: (B,). decoder_out: (B, U+1, D_dec) over each
            utterance's labels (references, hypotheses for unlabelled ones). symbol_lens: (B,).
        labels: as compute_targets. hyps: the hypotheses of (at least) the unlabelled utterances.

    Returns:
        per utterance: nodes (N, 2), logprobs (N, k), ids (N, k), rest (N,).
    """
    joiner = partial(model.joiner, project_input=False)
    am = model.joiner.encoder_proj(encoder_out)
    lm = model.joiner.decoder_proj(decoder_out)
    found: dict[int, Tensor] = {}
    walked = [b for b, y in enumerate(labels) if y is not None]
    if walked:
        rows = torch.tensor(walked, device=encoder_out.device)
        boundary = losses.boundary_from_lengths(symbol_lens[rows], encoder_out_lens[rows])
        nodes, lengths = one_best_path_from_joiner(joiner, am[rows], lm[rows], boundary, model.blank_id)
        for i, (b, n) in enumerate(zip(walked, lengths.tolist())):
            found[b] = nodes[i, :n]
    for b, y in enumerate(labels):
        if y is None:
            found[b] = hypothesis_path(hyps[b].timestamps, int(encoder_out_lens[b])).to(encoder_out.device)
    paths = [found[b] for b in range(len(labels))]
    nodes = torch.nn.utils.rnn.pad_sequence(paths, batch_first=True)  # (B, N, 2)
    top = topk_from_logits(gather_node_logits(joiner, am, lm, nodes), topk)
    out = []
    for b, path in enumerate(paths):
        arrays = _topk_arrays(_slice(top, b, path.size(0)), model.vocab_size)
        path_np = path.cpu().numpy()
        out.append({"nodes": path_np.astype(index_dtype(int(path_np.max(initial=0)))), **arrays})
    return out


def hypothesis_path(timestamps: list[int], frames: int) -> Tensor:
    """The lattice path of a hypothesis whose i-th token was emitted on frame ``timestamps[i]``.

    On each frame t, each token emitted there is a symbol node (t, u) -> (t, u+1), then the blank node
    (t, u) -> (t+1, u) ends the frame: T + U nodes from (0, 0) to (T-1, U).

    Returns:
        int64 (T + U, 2) nodes (t, u) in path order.
    """
    if any(not 0 <= t < frames for t in timestamps) or list(timestamps) != sorted(timestamps):
        raise ValueError(f"token frames {timestamps} must be non-decreasing within [0, {frames})")
    nodes, u, i = [], 0, 0
    for t in range(frames):
        while i < len(timestamps) and timestamps[i] == t:
            nodes.append((t, u))
            u, i = u + 1, i + 1
        nodes.append((t, u))
    return torch.tensor(nodes, dtype=torch.int64).view(-1, 2)


def _slice(top: TopK, b: int, n: int) -> TopK:
    return TopK(top.logprobs[b, :n], top.ids[b, :n], top.rest[b, :n])


def _topk_arrays(top: TopK, vocab_size: int, valid: Tensor | None = None) -> dict[str, np.ndarray]:
    """A TopK as stored arrays: logprobs and rest fp16, ids in the smallest type holding the vocabulary;
    entries off ``valid`` (bool, rest's shape) are zeroed."""
    logprobs, ids, rest = top.logprobs, top.ids, top.rest
    if valid is not None:
        logprobs = logprobs.masked_fill(~valid.unsqueeze(-1), 0.0)
        ids = ids.masked_fill(~valid.unsqueeze(-1), 0)
        rest = rest.masked_fill(~valid, 0.0)
    return {
        "logprobs": _half(logprobs),
        "ids": ids.cpu().numpy().astype(index_dtype(vocab_size - 1)),
        "rest": _half(rest),
    }


def _half(x: Tensor) -> np.ndarray:
    return x.to(torch.float16).cpu().numpy()
