"""On-device benchmark of exported students: size on disk, real-time factor with onnxruntime against PyTorch,
and the per-chunk latency of the streaming encoder.

    .venv/bin/python bench/export.py [--exp-dir exp/synth/<student>] [--config egs/synth/conf/student.yaml]
        [--bpe-model data/synth/lang_bpe_256/bpe.model] [--cuts data/synth/fbank/synth_cuts_test.jsonl.gz]
        [--num-utts 20] [--threads 1]

Models, each exported by kd.export (fp32 and int8) into a temporary directory:
    student          the averaged newest checkpoint of --exp-dir; without one, a randomly initialised model
                     of --config with --bpe-model's vocabulary (size and speed hardly depend on the weights)
    causal           the same config with causal: true, 640 ms chunks (16 frames), 64 frames of left context
                     (the student itself when it is causal); randomly initialised
    90% sparse       the student with every Linear/Conv weight magnitude-pruned to 90% zeros
                     (kd.train.sparsity's per-layer masks): the storage of a pruned student
Tables (all measured in this run):
    size     bytes on disk of encoder + decoder + joiner: PyTorch state dict (dense, and kd.train.sparsity's
             compact format), ONNX fp32 and int8, each also gzip-compressed (kd.bin.export --compress gzip)
    RTF      decode seconds / audio seconds over the first --num-utts cuts of --cuts (stored features),
             decoded one at a time (batch 1, as on a device), after one warm-up utterance; "same as
             PyTorch" counts utterances whose tokens equal the PyTorch decode's
    latency  per 640 ms chunk of the causal student, batch 1: the streaming encoder alone, and the encoder
             plus greedy search over the chunk's frames (median and 90th percentile over all chunks)
PyTorch runs with torch.set_num_threads(--threads), onnxruntime with as many intra-op threads.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gzip
import io
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lhotse import CutSet  # noqa: E402

from bench.machine import cpu_name  # noqa: E402
from kd.config import load_yaml  # noqa: E402
from kd.data.tokenizer import Tokenizer  # noqa: E402
from kd.decode import GreedySearch as TorchGreedySearch  # noqa: E402
from kd.decode import decode_batch  # noqa: E402
from kd.decode.streaming import LOG_EPS  # noqa: E402
from kd.export.inference import SearchOptions, decode_features  # noqa: E402
from kd.export.onnx_export import export_onnx  # noqa: E402
from kd.export.onnx_model import OnnxTransducer  # noqa: E402
from kd.export.search import GreedySearch  # noqa: E402
from kd.models import build_model, count_parameters  # noqa: E402
from kd.models.transducer import Transducer  # noqa: E402
from kd.train.checkpoint import epoch_checkpoints  # noqa: E402
from kd.train.config import TrainConfig  # noqa: E402
from kd.train.restore import load_trained_model  # noqa: E402
from kd.train.sparsity import (  # noqa: E402
    DEFAULT_LAYERS,
    apply_masks,
    magnitude_mask,
    prunable_parameters,
    save_compact_state_dict,
)

ROOT = Path(__file__).resolve().parents[1]
CAUSAL = {"causal": True, "chunk_size": 16, "left_context_frames": 64}
SPARSITY = 0.9
PARTS = ("encoder", "decoder", "joiner")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp-dir", type=Path, default=None, help="a trained student (default: random)")
    parser.add_argument("--config", type=Path, default=ROOT / "egs/synth/conf/student.yaml")
    parser.add_argument("--bpe-model", type=Path, default=ROOT / "data/synth/lang_bpe_256/bpe.model")
    parser.add_argument("--cuts", type=Path, default=ROOT / "data/synth/fbank/synth_cuts_test.jsonl.gz")
    parser.add_argument("--num-utts", type=int, default=20, help="utterances decoded per runtime and method")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    student, bpe_model, origin = _student(args)
    causal = student if _streams(student) else _causal_variant(args, student)
    sparse = _pruned(student, SPARSITY)
    features = _features(args.cuts, args.num_utts)
    audio_seconds = sum(len(f) for f in features[1:]) * 0.01

    print(f"# students: {origin}; vocabulary {student.vocab_size} ({bpe_model})")
    versions = f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    print(f"# {cpu_name()}, {versions}, {args.threads} thread(s)")
    print(f"# audio: {len(features) - 1} utterances of {args.cuts} ({audio_seconds:.1f} s) after one warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, model in (("student", student), ("causal", causal), ("90% sparse", sparse)):
            dirs[name] = Path(tmp) / name.replace(" ", "_").replace("%", "")
            export_onnx(model, bpe_model, dirs[name], int8=True, compress="none")
        _size_table({"student": student, "causal": causal, "90% sparse": sparse}, dirs, Path(tmp))
        onnx = {
            (name, int8): OnnxTransducer(dirs[name], int8, args.threads) for name in dirs for int8 in (0, 1)
        }
        _rtf_table(student, causal, onnx, features, audio_seconds)
        _latency_table(causal, onnx, features)


def _student(args: argparse.Namespace) -> tuple[Transducer, Path, str]:
    if args.exp_dir is not None and epoch_checkpoints(args.exp_dir):
        trained = load_trained_model(args.exp_dir, avg=1)
        return (
            trained.model,
            trained.tokenizer.model_path,
            f"trained {args.exp_dir} ({trained.checkpoints[-1].name})",
        )
    if not args.bpe_model.is_file():
        sys.exit(f"{args.bpe_model} not found: run the data stages of run.sh or pass --bpe-model")
    config = load_yaml(TrainConfig, args.config).model
    model = build_model(config, Tokenizer(args.bpe_model).vocab_size).eval()
    return model, args.bpe_model, f"randomly initialised from {args.config}"


def _streams(model: Transducer) -> bool:
    return bool(getattr(model.encoder, "causal", False))


def _causal_variant(args: argparse.Namespace, student: Transducer) -> Transducer:
    config = load_yaml(TrainConfig, args.config).model
    config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, **CAUSAL))
    return build_model(config, student.vocab_size).eval()


def _pruned(model: Transducer, sparsity: float) -> Transducer:
    pruned = copy.deepcopy(model)
    params = prunable_parameters(pruned, DEFAULT_LAYERS)
    apply_masks(pruned, {name: magnitude_mask(p, sparsity) for name, p in params.items()})
    return pruned


def _features(cuts_path: Path, num_utts: int) -> list[np.ndarray]:
    """(T, 80) features of the first num_utts + 1 cuts (the first is the warm-up)."""
    if not cuts_path.is_file():
        sys.exit(f"{cuts_path} not found: run the data stages of run.sh or pass --cuts")
    cuts = CutSet.from_file(cuts_path).subset(first=num_utts + 1)
    return [c.load_features().astype(np.float32) for c in cuts]


def _size_table(models: dict[str, Transducer], dirs: dict[str, Path], tmp: Path) -> None:
    print()
    print("| model | params (non-zero) | PyTorch | compact | ONNX fp32 | fp32 gzip | ONNX int8 | int8 gzip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        counts = count_parameters(model)
        state = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in PARTS}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        compact = save_compact_state_dict(state, tmp / f"{name}.compact.pt")
        sizes = []
        for suffix in (".onnx", ".int8.onnx"):
            data = [(dirs[name] / f"{part}{suffix}").read_bytes() for part in PARTS]
            sizes += [sum(map(len, data)), sum(len(gzip.compress(d, compresslevel=9)) for d in data)]
        exported = counts["encoder"] + counts["decoder"] + counts["joiner"]
        print(
            f"| {name} | {exported / 1e6:.2f} M ({counts['nonzero'] / counts['total']:.0%}) | "
            f"{_mib(buffer.tell())} | {_mib(compact)} | " + " | ".join(_mib(s) for s in sizes) + " |"
        )
    streaming = dirs["causal"] / "encoder_streaming.onnx"
    print(
        f"\nThe causal student's streaming encoder is one more file of the encoder's weights: "
        f"{_mib(streaming.stat().st_size)} fp32, "
        f"{_mib((dirs['causal'] / 'encoder_streaming.int8.onnx').stat().st_size)} int8."
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _rtf_table(
    student: Transducer,
    causal: Transducer,
    onnx: dict[tuple[str, int], OnnxTransducer],
    features: list[np.ndarray],
    audio_seconds: float,
) -> None:
    print()
    print("| model | method | PyTorch RTF | onnxruntime fp32 RTF | int8 RTF | fp32 / int8 same as PyTorch |")
    print("|---|---|---:|---:|---:|---:|")
    cases = [
        ("student", student, SearchOptions("greedy_search"), "greedy_search"),
        ("student", student, SearchOptions("modified_beam_search"), "modified_beam_search"),
        ("causal", causal, SearchOptions("greedy_search", streaming=True), "streaming_greedy_search"),
    ]
    for name, model, options, torch_method in cases:
        seconds, torch_hyps = _time_all(features, lambda f, m=model, t=torch_method: _torch_decode(m, f, t))
        row = [f"{seconds / audio_seconds:.4f}"]
        same = []
        for int8 in (0, 1):
            runtime = onnx[name, int8]
            seconds, hyps = _time_all(features, lambda f, r=runtime, o=options: _onnx_decode(r, f, o))
            row.append(f"{seconds / audio_seconds:.4f}")
            same.append(sum(a == b for a, b in zip(hyps, torch_hyps)))
        agree = " / ".join(f"{n}/{len(torch_hyps)}" for n in same)
        print(f"| {name} | {options.tag} | {' | '.join(row)} | {agree} |")


def _time_all(features: list[np.ndarray], decode) -> tuple[float, list[list[int]]]:
    """Decodes features[0] untimed (warm-up), then the rest one by one; returns seconds and hypotheses."""
    decode(features[0])
    hyps, seconds = [], 0.0
    for f in features[1:]:
        start = time.perf_counter()
        hyps.append(decode(f))
        seconds += time.perf_counter() - start
    return seconds, hyps


@torch.inference_mode()
def _torch_decode(model: Transducer, features: np.ndarray, method: str) -> list[int]:
    x = torch.from_numpy(features)[None]
    return decode_batch(model, x, torch.tensor([len(features)]), method)[0]


def _onnx_decode(model: OnnxTransducer, features: np.ndarray, options: SearchOptions) -> list[int]:
    return decode_features(model, features[None], np.array([len(features)]), options)[0]


def _latency_table(
    causal: Transducer, onnx: dict[tuple[str, int], OnnxTransducer], features: list[np.ndarray]
) -> None:
    encoder = causal.encoder
    shift = encoder.chunk_size * encoder.subsampling_factor
    window = shift + encoder.streaming_pad_frames
    print()
    print("| runtime | encoder per chunk, median (p90) ms | encoder + greedy search, median (p90) ms |")
    print("|---|---:|---:|")
    first = encoder.subsampling_factor + encoder.streaming_pad_frames
    windows = [_windows(f, shift, window, first) for f in features]
    rows = {"PyTorch": _torch_chunks(causal, features, windows, shift)}
    for int8 in (0, 1):
        rows[f"onnxruntime {'int8' if int8 else 'fp32'}"] = _onnx_chunks(
            onnx["causal", int8], features, windows, shift
        )
    for name, (enc, total) in rows.items():
        print(f"| {name} | {_ms(enc)} | {_ms(total)} |")
    print(
        f"\nChunks of {shift} feature frames (+{encoder.streaming_pad_frames} of right context) = "
        f"{shift * 10} ms of audio, {encoder.left_context_frames} encoder frames of left context, batch 1."
    )


def _ms(samples: list[float]) -> str:
    return f"{1e3 * statistics.median(samples):.2f} ({1e3 * np.percentile(samples, 90):.2f})"


def _windows(features: np.ndarray, shift: int, window: int, first: int) -> list[np.ndarray]:
    """The streaming windows of one utterance (as kd.export.inference makes them): while ``first`` frames
    (one encoder frame's worth) remain, a window; the last padded with log(1e-10)."""
    num = (len(features) - first) // shift + 1
    padded = np.full(((num - 1) * shift + window, features.shape[1]), LOG_EPS, dtype=np.float32)
    padded[: len(features)] = features
    return [padded[k * shift : k * shift + window] for k in range(num)]


@torch.inference_mode()
def _torch_chunks(
    model: Transducer, features: list[np.ndarray], windows: list[list[np.ndarray]], shift: int
) -> tuple[list[float], list[float]]:
    """Seconds per chunk: streaming encoder, and encoder + greedy search; the first utterance is a warm-up."""
    enc_times, total_times = [], []
    for i, (utt, utt_windows) in enumerate(zip(features, windows)):
        states = model.encoder.get_init_states(1)
        search = TorchGreedySearch(model, 1, "cpu")
        for k, chunk in enumerate(utt_windows):
            x_lens = torch.tensor([min(len(utt) - k * shift, len(chunk))])
            start = time.perf_counter()
            out, out_lens, states = model.encoder.streaming_forward(
                torch.from_numpy(chunk)[None], x_lens, states
            )
            out = model.joiner.encoder_proj(out)
            middle = time.perf_counter()
            search.advance(out, out_lens)
            end = time.perf_counter()
            if i > 0:
                enc_times.append(middle - start)
                total_times.append(end - start)
    return enc_times, total_times


def _onnx_chunks(
    model: OnnxTransducer, features: list[np.ndarray], windows: list[list[np.ndarray]], shift: int
) -> tuple[list[float], list[float]]:
    """As :func:`_torch_chunks`, with the onnxruntime graphs and the numpy search."""
    enc_times, total_times = [], []
    for i, (utt, utt_windows) in enumerate(zip(features, windows)):
        states = model.init_streaming_states(1)
        search = GreedySearch(model, 1)
        for k, chunk in enumerate(utt_windows):
            x_lens = np.array([min(len(utt) - k * shift, len(chunk))])
            start = time.perf_counter()
            out, out_lens, states = model.encode_chunk(chunk[None], x_lens, states)
            middle = time.perf_counter()
            search.advance(out, out_lens)
            end = time.perf_counter()
            if i > 0:
                enc_times.append(middle - start)
                total_times.append(end - start)
    return enc_times, total_times


if __name__ == "__main__":
    main()
