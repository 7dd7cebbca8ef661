"""How much each Conformer block adds to the encoder's residual stream, against what the front-end puts in.

    python -m kd.bin.encoder_scales --exp-dir exp/synth/teacher --epoch 4 \
        --cuts data/synth/fbank/synth_cuts_dev.jsonl.gz [--num-cuts 8]

Prints the RMS over valid frames of the subsampling's output, then per block the RMS of what the block adds
and of the stream after it (eval mode, full context). A block whose addition is a few percent of the stream
barely changes the encoder output, which the final LayerNorm then rescales: the numbers behind the
``frontend_norm`` option of the encoder config and the plateau study of egs/synth/RESULTS.md.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class StreamScale:
    name: str  # "front-end" or "block <i>"
    added_rms: float  # RMS of what this stage adds to the stream (the front-end: its whole output)
    stream_rms: float  # RMS of the stream after this stage


def _rms(h: torch.Tensor, valid: torch.Tensor) -> float:
    """RMS of the (B, T, D) frames where ``valid`` (B, T) is True."""
    return float(h[valid].pow(2).mean().sqrt())


@torch.no_grad()
def residual_stream_scales(
    encoder: torch.nn.Module, x: torch.Tensor, x_lens: torch.Tensor
) -> list[StreamScale]:
    """The front-end output and the per-block additions of a ConformerEncoder, before its final norm.

    Runs the encoder's own forward and reads the stream with hooks on its subsampling and its blocks.

    Args:
        encoder: the encoder, in eval mode (dropout off, every block at full weight).
        x: (B, T, F) features; x_lens: (B,) valid frames.
    Returns:
        One entry for the front-end, then one per block.
    Raises:
        ValueError: for an encoder with low-frame-rate blocks (their stream is not the 40 ms one).
    """
    if len(encoder.bridges) > 0:
        raise ValueError(
            "encoder_scales reads the 40 ms residual stream block by block; this encoder runs blocks at "
            f"lower frame rates (encoder.block_downsampling={encoder.config.block_downsampling})"
        )
    streams: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input, output) of the front-end and each block
    hooks = [
        encoder.subsampling.register_forward_hook(
            lambda m, i, out: streams.append((torch.zeros_like(out), out))
        )
    ]
    for layer in encoder.layers:
        hooks.append(layer.register_forward_hook(lambda m, i, out: streams.append((i[0], out[0]))))
    try:
        _, lens = encoder(x, x_lens)
    finally:
        for h in hooks:
            h.remove()
    valid = torch.arange(streams[0][1].size(1), device=x.device)[None, :] < lens[:, None]  # (B, T')
    names = ["front-end"] + [f"block {i}" for i in range(len(encoder.layers))]
    return [StreamScale(n, _rms(out - inp, valid), _rms(out, valid)) for n, (inp, out) in zip(names, streams)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--epoch", type=int, help="checkpoint epoch-N.pt (default: the newest)")
    parser.add_argument("--cuts", required=True, help="CutSet with features")
    parser.add_argument("--num-cuts", type=int, default=8, help="the first N cuts, one batch")
    args = parser.parse_args(argv)
    from kd.data.dataset import PAD_VALUE
    from kd.data.io import load_cuts
    from kd.train.restore import load_trained_model

    model = load_trained_model(args.exp_dir, epoch=args.epoch).model
    cuts = [c for _, c in zip(range(args.num_cuts), load_cuts(args.cuts))]
    features = [torch.from_numpy(c.load_features()) for c in cuts]
    x = torch.nn.utils.rnn.pad_sequence(features, batch_first=True, padding_value=PAD_VALUE)
    x_lens = torch.tensor([f.size(0) for f in features])
    print(f"{args.exp_dir} (epoch {args.epoch or 'newest'}), {len(cuts)} cuts of {args.cuts}")
    print("| stage | added RMS | stream RMS |\n|---|---:|---:|")
    for s in residual_stream_scales(model.encoder, x, x_lens):
        print(f"| {s.name} | {s.added_rms:.3f} | {s.stream_rms:.3f} |")


if __name__ == "__main__":
    main()
