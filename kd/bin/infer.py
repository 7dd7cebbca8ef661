"""Decodes audio or CutSets with an exported model, on onnxruntime alone (no PyTorch model).

    python -m kd.bin.infer --model-dir exp/synth/student/onnx --bpe-model data/synth/lang_bpe_32/bpe.model \
        --cuts data/synth/fbank/synth_cuts_test.jsonl.gz --method modified_beam_search [--streaming] [--int8]
    python -m kd.bin.infer --model-dir ... --bpe-model ... a.wav b.flac

Prints "<id>\\t<transcript>" per utterance and the real-time factor (graphs + search, features excluded).
For cuts with transcripts it also writes recogs-/errs-/wer-<set>-onnx[_int8]_<method>.txt (+ .json) into
--res-dir (default: --model-dir) and logs the WER. Audio at another sampling rate is resampled to the
model's; multi-channel audio is refused (down-mix it first). A BPE model other than the one the model was
trained with is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from kd.bin.decode import set_name
from kd.data.tokenizer import Tokenizer
from kd.decode import save_results
from kd.export.inference import METHODS, SearchOptions, decode_utterances
from kd.export.inputs import Utterance, audio_utterance, cuts_utterances
from kd.export.metadata import check_tokenizer
from kd.export.onnx_model import OnnxTransducer
from kd.logging_utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kd.bin.infer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="directory written by kd.bin.export")
    parser.add_argument("--bpe-model", type=Path, required=True, help="the model's sentencepiece model")
    parser.add_argument(
        "--cuts", type=Path, nargs="+", default=[], help="CutSets to decode (with or without features)"
    )
    parser.add_argument("files", type=Path, nargs="*", help="audio files to decode (wav, flac, ...)")
    parser.add_argument("--method", choices=METHODS, default="greedy_search")
    parser.add_argument(
        "--streaming", action="store_true", help="chunk by chunk through the streaming encoder"
    )
    parser.add_argument("--int8", action="store_true", help="use the int8 graphs")
    parser.add_argument("--beam", type=int, default=4, help="beam of modified_beam_search")
    parser.add_argument(
        "--max-sym-per-frame", type=int, default=1, help="symbols per frame at most, in both methods"
    )
    parser.add_argument("--max-duration", type=float, default=300.0, help="seconds of audio per batch")
    parser.add_argument("--num-threads", type=int, default=1, help="onnxruntime threads per graph")
    parser.add_argument("--res-dir", type=Path, default=None, help="result files (default: --model-dir)")
    return parser


def _decode(
    model: OnnxTransducer,
    tokenizer: Tokenizer,
    utterances: Iterable[Utterance],
    options: SearchOptions,
    max_frames: int,
) -> tuple[list[tuple[str, str | None, str]], float]:
    """Decodes and prints every utterance; returns (id, reference or None, hypothesis) and the RTF."""
    decoded, stats = decode_utterances(model, utterances, options, max_frames)
    texts = [(utt_id, ref, tokenizer.decode(hyp)) for utt_id, ref, hyp in decoded]
    for utt_id, _, text in texts:
        sys.stdout.write(f"{utt_id}\t{text}\n")
    rtf = stats["decode_seconds"] / max(stats["audio_seconds"], 1e-9)
    logging.info(
        "%d utterances, %.1f s of audio decoded in %.2f s: RTF %.4f",
        len(texts),
        stats["audio_seconds"],
        stats["decode_seconds"],
        rtf,
    )
    return texts, rtf


def main(argv: list[str] | None = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if bool(args.cuts) == bool(args.files):
        parser.error("give either --cuts or audio files (not both, not neither)")
    setup_logging()
    model = OnnxTransducer(args.model_dir, int8=args.int8, num_threads=args.num_threads)
    tokenizer = Tokenizer(args.bpe_model)
    check_tokenizer(model.metadata, args.model_dir, args.bpe_model, tokenizer.vocab_size)
    options = SearchOptions(args.method, args.streaming, args.beam, args.max_sym_per_frame)
    max_frames = int(args.max_duration / model.metadata.frame_shift)
    sampling_rate = model.metadata.sampling_rate
    if args.files:
        _decode(
            model, tokenizer, (audio_utterance(p, sampling_rate) for p in args.files), options, max_frames
        )
        return
    tag = f"onnx{'_int8' if args.int8 else ''}_{options.tag}"
    res_dir = args.res_dir or args.model_dir
    for cuts_path in args.cuts:
        if not cuts_path.is_file():
            raise FileNotFoundError(f"{cuts_path} not found")
        texts, rtf = _decode(model, tokenizer, cuts_utterances(cuts_path, sampling_rate), options, max_frames)
        if not all(ref for _, ref, _ in texts):
            logging.info("%s: some cuts have no transcript, so no WER", cuts_path)
            continue
        results = [(utt_id, ref.split(), text.split()) for utt_id, ref, text in texts]
        info = {"runtime": "onnxruntime", "int8": args.int8, "model_dir": str(args.model_dir)}
        wer = save_results(res_dir, set_name(cuts_path), tag, results, rtf=rtf, model_info=info)
        logging.info("%s %s: %s (RTF %.4f)", set_name(cuts_path), tag, wer.summary(), rtf)


if __name__ == "__main__":
    main()
