"""Can a model config learn alignments? Trains it on the first N cuts and scores those same cuts.

    python -m kd.bin.overfit --config egs/synth/conf/teacher.yaml \
        --cuts data/synth/fbank/synth_cuts_train.jsonl.gz --bpe-model data/synth/lang_bpe_32/bpe.model \
        --num-cuts 24 --steps 300 [--ctc-only] [model.encoder.block_norm=true ...]

A set-up that trains correctly drives the WER on a few dozen training utterances towards 0 within a few
hundred updates; one that keeps emitting blanks (all deletions) has an optimisation problem that no amount
of data fixes. Every ``--eval-every`` updates it prints the greedy WER on the N cuts (transducer greedy
search, or the best CTC path with ``--ctc-only``, which trains the encoder and the CTC head alone) and the
training loss per frame. No augmentation, fixed seeds, AdamW with a linear warm-up to ``--lr``; dropout is
whatever the config (or an override such as model.encoder.dropout=0.0) says.
"""

from __future__ import annotations

import argparse
import logging
import time

import kaldialign
import torch
from lhotse import CutSet

from kd.config import load_yaml
from kd.data.dataset import PAD_VALUE
from kd.data.tokenizer import Tokenizer
from kd.decode.greedy import greedy_search_batch
from kd.models import build_model
from kd.train.config import TrainConfig
from kd.train.objective import TransducerObjective, layer_warmup


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", required=True, help="training YAML (its model and loss sections are used)"
    )
    parser.add_argument("--cuts", required=True, help="CutSet with features and transcripts")
    parser.add_argument("--bpe-model", required=True)
    parser.add_argument("--num-cuts", type=int, default=24, help="the first N labelled cuts")
    parser.add_argument("--steps", type=int, default=300, help="updates")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per update, drawn at random")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100, help="updates of linear learning-rate warm-up")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--ctc-only", action="store_true", help="train the encoder with CTC alone")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config overrides: key.sub=value")
    return parser


def pad(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """B (T_b, F) matrices -> (B, T_max, F) padded as the data module pads, and (B,) lengths."""
    lens = torch.tensor([f.size(0) for f in features])
    return torch.nn.utils.rnn.pad_sequence(features, batch_first=True, padding_value=PAD_VALUE), lens


def ctc_greedy(model: torch.nn.Module, encoder_out: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """Best CTC path per utterance, repeats merged and blanks removed: (B, T, D), (B,) -> B token lists."""
    best = model.ctc_output(encoder_out).argmax(dim=-1)
    hyps = []
    for row, n in zip(best, lens.tolist()):
        hyps.append([t for t in torch.unique_consecutive(row[:n]).tolist() if t != model.blank_id])
    return hyps


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = load_yaml(TrainConfig, args.config, args.overrides)
    if args.ctc_only:
        config.model.ctc_head = True
    tokenizer = Tokenizer(args.bpe_model)
    model = build_model(config.model, tokenizer.vocab_size)
    cuts = [c for c in CutSet.from_file(args.cuts) if c.supervisions and c.supervisions[0].text]
    cuts = cuts[: args.num_cuts]
    features = [torch.from_numpy(c.load_features()) for c in cuts]
    texts = [c.supervisions[0].text for c in cuts]
    labels = tokenizer.encode(texts)
    objective = TransducerObjective(config.loss, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / args.warmup))
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    loss_per_frame = float("nan")
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                x, x_lens = pad(features)
                encoder_out, lens = model.encoder(x, x_lens)
                hyps = (
                    ctc_greedy(model, encoder_out, lens)
                    if args.ctc_only
                    else greedy_search_batch(model, encoder_out, lens)
                )
            errors = sum(
                kaldialign.edit_distance(t.split(), h.split())["total"]
                for t, h in zip(texts, tokenizer.decode(hyps))
            )
            words = sum(len(t.split()) for t in texts)
            print(
                f"update {step}: WER {100 * errors / words:.1f}% on the {len(cuts)} training cuts, "
                f"loss {loss_per_frame:.3f} per frame, {time.time() - start:.0f} s",
                flush=True,
            )
            model.train()
        if step == args.steps:
            break
        batch = torch.randperm(len(cuts), generator=generator)[: args.batch_size].tolist()
        x, x_lens = pad([features[i] for i in batch])
        if args.ctc_only:
            encoder_out, lens = model.encoder(x, x_lens, warmup=layer_warmup(config.loss, step))
            symbols, y_lens = model.labels_to_symbols([labels[i] for i in batch], x.device)
            loss = model.ctc_loss(encoder_out, lens, symbols, y_lens)
            frames = int(lens.sum())
        else:
            # The training loop's own objective: the same loss weights, warm-ups and CTC term.
            out = objective(
                model, {"features": x, "feature_lens": x_lens, "texts": [texts[i] for i in batch]}, step
            )
            loss, frames = out.total, out.num_frames
        loss_per_frame = loss.item() / frames
        optimizer.zero_grad(set_to_none=True)
        (loss / frames).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()


if __name__ == "__main__":
    main()
