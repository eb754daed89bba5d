"""Models in and out of bpserve: ONNX export and import, and scikit-learn / PyTorch objects.

Every way in ends in the same place, a ``Model`` with a fresh optimizer state, so
``/train-step`` works on an imported model at once:

- ``export_onnx(model)`` / ``import_onnx(data)``: an MLP as one ONNX graph (onnx.py's
  protobuf, never pickle), the ``bptrain export`` / ``bptrain import`` commands;
- ``from_sklearn(estimator)`` and ``from_torch(module)``: fitted objects already in
  memory.  There is deliberately no path that unpickles a file.

onnx and onnxruntime come with ``pip install 'bpserve[onnx]'``; scikit-learn and torch are
only needed for their own adapters.  Nothing here is imported by the service.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use, so that from_torch and from_sklearn work without onnx installed.
_WHERE = {
    "InteropError": "layers",
    "Layer": "layers",
    "build_model": "layers",
    "export_onnx": "onnx_export",
    "save_onnx": "onnx_export",
    "import_onnx": "onnx_import",
    "load_onnx": "onnx_import",
    "from_sklearn": "sklearn_adapter",
    "from_torch": "torch_adapter",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'training.interop' has no attribute {name!r}")
    return getattr(importlib.import_module(f"training.interop.{_WHERE[name]}"), name)
