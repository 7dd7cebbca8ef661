"""Trains the sentencepiece BPE model on the transcripts of a cuts manifest.

    python -m kd.bin.train_bpe --cuts data/synth/fbank/synth_cuts_train.jsonl.gz --vocab-size 32 \
        --output-dir data/synth/lang_bpe_32

Output: <output-dir>/bpe.model, bpe.vocab and transcript_words.txt; token 0 is the blank <blk>,
1 is <sos/eos>, 2 is <unk>. Unlabelled cuts are ignored. An existing model is kept unless --force.
"""

from __future__ import annotations

import argparse

from kd.data.cli import run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cuts", required=True, nargs="+", help="cuts manifest(s) with the training transcripts"
    )
    parser.add_argument("--vocab-size", type=int, required=True, help="number of tokens, blank included")
    parser.add_argument("--output-dir", required=True, help="the lang directory to write")
    parser.add_argument(
        "--model-type",
        choices=["unigram", "bpe"],
        default="unigram",
        help="sentencepiece algorithm (icefall's lang_bpe models are unigram)",
    )
    parser.add_argument("--force", action="store_true", help="retrain when bpe.model exists")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    from kd.data.dataset import cut_text
    from kd.data.io import load_cuts
    from kd.data.tokenizer import Tokenizer, train_bpe

    texts = [cut_text(c) for path in args.cuts for c in load_cuts(path)]
    model = train_bpe(texts, args.vocab_size, args.output_dir, model_type=args.model_type, force=args.force)
    print(f"{model}: {Tokenizer(model).vocab_size} tokens")


if __name__ == "__main__":
    run_main(main)
