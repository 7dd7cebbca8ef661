"""TorchScript export: the same encoder / streaming encoder / decoder / joiner split as the ONNX graphs,
traced with ``torch.jit.trace`` (dynamic in batch and length like the ONNX graphs), for PyTorch runtimes
such as libtorch or PyTorch Mobile. Load a part with ``torch.jit.load(path)``; inputs and outputs are those
documented in :mod:`kd.export.modules`."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from kd.decode.atomic import write_atomic
from kd.export.modules import export_modules
from kd.models.transducer import Transducer


def export_torchscript(model: Transducer, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``<part>.pt`` for every part into ``out_dir``; returns ``{file name: path}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    written: dict[str, Path] = {}
    for part, module in export_modules(model).items():
        with torch.no_grad(), warnings.catch_warnings():
            # Python ints recorded as constants are config values (chunk and kernel sizes); see onnx_export.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            traced = torch.jit.trace(module, module.example_inputs(), check_trace=False)
        path = out_dir / f"{part}.pt"
        write_atomic(path, lambda tmp, traced=traced: traced.save(str(tmp)))
        written[path.name] = path
    return written
