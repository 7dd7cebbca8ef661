"""Where exported graphs live on disk: ``<name>[.int8].onnx``, or gzip-compressed ``.onnx.gz``.

Sparse students store most weights as zeros, which a dense ONNX initializer still spends 4 bytes (fp32) or
1 byte (int8) on. gzip squeezes those runs away (a 90%-sparse model shrinks several-fold) and the runtime
decompresses the file into memory before creating the session, so no sparse kernels or ONNX sparse
initializers are needed (onnxruntime densifies those at load anyway).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from kd.decode.atomic import write_atomic

PARTS = ("encoder", "encoder_streaming", "decoder", "joiner")


def model_filename(part: str, int8: bool = False, compressed: bool = False) -> str:
    """``encoder.onnx``, ``encoder.int8.onnx``, ``encoder.onnx.gz``, ..."""
    return f"{part}{'.int8' if int8 else ''}.onnx{'.gz' if compressed else ''}"


def write_model_bytes(path: Path, data: bytes, compressed: bool) -> None:
    """Writes a serialised ONNX model, gzip-compressed when ``compressed``, atomically."""
    payload = gzip.compress(data, compresslevel=9, mtime=0) if compressed else data
    write_atomic(path, lambda tmp: tmp.write_bytes(payload))


def find_model(model_dir: str | Path, part: str, int8: bool = False) -> Path | None:
    """The file of ``part`` in ``model_dir`` (plain preferred over gzip), or None when there is none."""
    for compressed in (False, True):
        path = Path(model_dir) / model_filename(part, int8, compressed)
        if path.is_file():
            return path
    return None


def read_model_bytes(path: Path) -> bytes:
    """The serialised ONNX model in ``path``, decompressed when it is a ``.gz`` file."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data
