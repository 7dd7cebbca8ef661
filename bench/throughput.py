"""Training throughput and decoding real-time factor of the teacher and student configs, in one run.

    .venv/bin/python bench/throughput.py [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz] \
        [--model teacher=exp/synth/teacher --model student=exp/synth/student_none] [--threads 2]

For each ``--model NAME=EXP_DIR`` (its config.yaml and newest checkpoint; a model whose experiment has no
checkpoint yet is measured randomly initialised, which the table says):
    train   encoder frames per second of a full training step (forward, simple + pruned loss, backward,
            AdamW step) over the batches of ``--cuts`` at the config's max_duration, after one warm-up batch
    decode  real-time factor (compute seconds / audio seconds) of the encoder + greedy search and of the
            encoder + modified beam search (beam 4) over the same cuts, batched as kd.bin.decode does
The models take turns batch by batch, so a change in a shared machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cuts", default="data/synth/fbank/synth_cuts_dev.jsonl.gz", help="CutSet with features"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="NAME=EXP_DIR (repeatable); default teacher=exp/synth/teacher student=exp/synth/student_none",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--max-batches", type=int, default=0, help="batches per measurement (0: all)")
    args = parser.parse_args()
    import torch
    from lhotse import CutSet

    from kd.config import load_yaml
    from kd.data.datamodule import AsrDataModule
    from kd.data.tokenizer import Tokenizer
    from kd.decode.beam_search import modified_beam_search
    from kd.decode.greedy import greedy_search_batch
    from kd.models import build_model, count_parameters
    from kd.train.checkpoint import latest_checkpoint, load_checkpoint
    from kd.train.config import TrainConfig
    from kd.train.objective import TransducerObjective
    from kd.train.optim import build_optimizer

    torch.set_num_threads(args.threads)
    specs = args.model or ["teacher=exp/synth/teacher", "student=exp/synth/student_none"]
    cuts = CutSet.from_file(args.cuts).to_eager()
    audio_seconds = sum(c.duration for c in cuts)
    runs = []
    for spec in specs:
        name, exp_dir = spec.split("=", 1)
        config = load_yaml(TrainConfig, Path(exp_dir) / "config.yaml")
        tokenizer = Tokenizer(config.paths.bpe_model)
        model = build_model(config.model, tokenizer.vocab_size)
        ckpt = latest_checkpoint(Path(exp_dir))
        if ckpt is not None:
            model.load_state_dict(load_checkpoint(ckpt)["model"])
        optimizer, _ = build_optimizer(model, config.optim)
        data = AsrDataModule(config.data)
        batches = list(data.eval_dataloader(cuts))
        if args.max_batches:
            batches = batches[: args.max_batches]
        runs.append(
            dict(
                name=name,
                model=model,
                params=count_parameters(model)["total"],
                trained=ckpt.name if ckpt is not None else "random init",
                objective=TransducerObjective(config.loss, tokenizer),
                optimizer=optimizer,
                batches=batches,
                train_s=0.0,
                frames=0,
                greedy_s=0.0,
                beam_s=0.0,
                audio_s=sum(c.duration for b in batches for c in b["cuts"]),
            )
        )

    def train_step(run: dict, batch: dict) -> int:
        run["model"].train()
        loss = run["objective"](run["model"], batch, 10**6)
        (loss.total / loss.num_frames).backward()
        run["optimizer"].step()
        run["optimizer"].zero_grad(set_to_none=True)
        return loss.num_frames

    for run in runs:  # warm-up
        train_step(run, run["batches"][0])
    for i in range(max(len(r["batches"]) for r in runs)):
        for run in runs:
            if i >= len(run["batches"]):
                continue
            batch = run["batches"][i]
            start = time.perf_counter()
            run["frames"] += train_step(run, batch)
            run["train_s"] += time.perf_counter() - start
            model = run["model"].eval()
            with torch.inference_mode():
                for method, key in ((greedy_search_batch, "greedy_s"), (modified_beam_search, "beam_s")):
                    start = time.perf_counter()
                    enc, enc_lens = model.encoder(batch["features"], batch["feature_lens"])
                    method(model, enc, enc_lens)
                    run[key] += time.perf_counter() - start

    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads"
    )
    used = runs[0]["audio_s"]
    print(
        f"# cuts: {args.cuts} ({len(cuts)} cuts, {audio_seconds / 3600:.3f} h), {used:.1f} s of them measured"
    )
    print("| model | params | weights | train (encoder frames/s) | RTF greedy | RTF beam 4 |")
    print("|---|---:|---|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run['name']} | {run['params'] / 1e6:.2f} M | {run['trained']} | "
            f"{run['frames'] / run['train_s']:,.0f} | {run['greedy_s'] / run['audio_s']:.4f} | "
            f"{run['beam_s'] / run['audio_s']:.4f} |"
        )
    if len(runs) > 1:
        base = runs[0]
        for run in runs[1:]:
            speed = (run["frames"] / run["train_s"]) / (base["frames"] / base["train_s"])
            print(
                f"\n{run['name']} / {base['name']}: training {speed:.2f}x the frames/s, greedy decoding "
                f"{base['greedy_s'] / run['greedy_s']:.2f}x as fast"
            )


if __name__ == "__main__":
    main()
