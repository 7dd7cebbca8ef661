"""On-device models: ONNX (fp32, int8) and TorchScript export of trained transducers, and decoding with
onnxruntime alone (numpy greedy / modified beam search, whole-utterance or streaming)."""

from kd.export.inference import METHODS, SearchOptions, decode_features, decode_utterances
from kd.export.metadata import ExportMetadata, check_tokenizer
from kd.export.onnx_export import OPSET, export_onnx
from kd.export.onnx_model import OnnxDecoder, OnnxTransducer
from kd.export.search import GreedySearch, ModifiedBeamSearch
from kd.export.torchscript_export import export_torchscript

__all__ = [
    "METHODS",
    "OPSET",
    "ExportMetadata",
    "GreedySearch",
    "ModifiedBeamSearch",
    "OnnxDecoder",
    "OnnxTransducer",
    "SearchOptions",
    "check_tokenizer",
    "decode_features",
    "decode_utterances",
    "export_onnx",
    "export_torchscript",
]
