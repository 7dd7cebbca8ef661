"""Exports a trained (or checkpoint-averaged) transducer to ONNX, optionally int8 and TorchScript.

    python -m kd.bin.export --exp-dir exp/synth/student --epoch 6 --avg 2 --out-dir exp/synth/student/onnx \
        [--int8] [--torchscript] [--compress auto|gzip|none]

Writes into --out-dir (see kd/export/modules.py for each graph's inputs and outputs):
  encoder.onnx            features -> encoder frames projected for the joiner
  encoder_streaming.onnx  causal encoders: one chunk + flat states -> frames + new states (a cascaded
                          model: its first pass; encoder.onnx is then the second, final pass)
  decoder.onnx            last context labels (LSTM: last label + state) -> projected decoder output
  joiner.onnx             projected encoder frame + decoder output -> logits
  <part>.int8.onnx        with --int8: MatMul weights dynamically quantised to int8
  <part>.pt               with --torchscript: the same graphs traced with torch.jit
Every ONNX file carries the metadata a runtime needs (vocabulary, blank, subsampling, context size,
chunking, feature dim, the tokenizer's sha256). Sparse models (>= 50% zero weights) are written as
gzip-compressed <part>.onnx.gz under --compress auto; kd.bin.infer reads either form.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kd.export.onnx_export import COMPRESS_CHOICES, OPSET, export_onnx
from kd.export.torchscript_export import export_torchscript
from kd.logging_utils import setup_logging
from kd.train.restore import load_trained_model


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kd.bin.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--exp-dir", type=Path, required=True, help="experiment directory with epoch-N.pt")
    parser.add_argument("--epoch", type=int, default=None, help="last epoch to use (default: the newest)")
    parser.add_argument("--avg", type=int, default=1, help="number of epoch checkpoints to average")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the exported files go")
    parser.add_argument("--bpe-model", default=None, help="tokenizer (default: the one in the config)")
    parser.add_argument("--int8", action="store_true", help="also write int8 dynamically quantised graphs")
    parser.add_argument("--torchscript", action="store_true", help="also write TorchScript (traced) graphs")
    parser.add_argument(
        "--compress",
        choices=COMPRESS_CHOICES,
        default="auto",
        help="gzip the ONNX files: always, never, or auto (when >= 50%% of the weights are zeros)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.out_dir / "log", "export")
    trained = load_trained_model(args.exp_dir, args.epoch, args.avg, "cpu", args.bpe_model)
    source = f"{args.exp_dir} ({', '.join(p.name for p in trained.checkpoints)} averaged)"
    written = export_onnx(
        trained.model,
        trained.tokenizer.model_path,
        args.out_dir,
        source=source,
        int8=args.int8,
        compress=args.compress,
    )
    if args.torchscript:
        written.update(export_torchscript(trained.model, args.out_dir))
    logging.info("exported %s at ONNX opset %d into %s:", source, OPSET, args.out_dir)
    for name, path in sorted(written.items()):
        logging.info("  %-28s %10.1f KiB", name, path.stat().st_size / 1024)


if __name__ == "__main__":
    main()
