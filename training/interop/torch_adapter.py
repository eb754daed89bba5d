"""A PyTorch ``nn.Sequential`` of ``Linear`` layers and activations as a Model.

``Linear`` stores its weight as (out, in); bpserve's layout is (in, out), so the weight is
transposed (a copy of the same float values).  ``ReLU``, ``Sigmoid``, ``Tanh``,
``Softmax(dim=1)`` and ``Identity`` are the activations bpserve has; any other module is
refused with its index and class, since the network could not compute what it does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.interop.layers import Act, Dense, InteropError, assemble, build_model
from training.model import Model

ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}


def from_torch(
    module: Any,
    *,
    labels: list[str] | None = None,
    loss: str | None = None,
    learning_rate: float | None = None,
    momentum: float | None = None,
) -> Model:
    """The module's network as a Model (softmax output: a classifier with cross-entropy).

    End the Sequential with ``nn.Softmax(dim=1)`` for a classifier: a module that ends
    in a ``Linear`` computes logits, and that is what bpserve would then serve.
    """
    import torch  # only here: the rest of bpserve does not need it

    steps: list[Dense | Act] = []
    for where, m in _flatten(module, torch.nn.Sequential):
        kind = type(m).__name__
        if isinstance(m, torch.nn.Linear):
            w = m.weight.detach().cpu().numpy()
            b = (
                m.bias.detach().cpu().numpy()
                if m.bias is not None
                else np.zeros(w.shape[0], dtype=w.dtype)
            )
            steps.append(Dense(np.ascontiguousarray(w.T), b.copy(), where))
        elif kind in ACTIVATIONS and type(m).__module__.startswith("torch.nn"):
            if kind == "Softmax" and m.dim not in (1, -1):
                raise InteropError(f"{where}: Softmax(dim={m.dim}) is not over the classes")
            steps.append(Act(ACTIVATIONS[kind], where))
        elif isinstance(m, torch.nn.Identity):
            continue
        else:
            raise InteropError(f"{where} is not supported (Linear, ReLU, Sigmoid, Tanh, Softmax)")
    return build_model(
        assemble(steps),
        labels=labels,
        loss=loss,
        learning_rate=learning_rate,
        momentum=momentum,
    )


def _flatten(module: Any, sequential: type, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(module, sequential):
        return [(f"module {prefix or '0'} ({type(module).__name__})", module)]
    out = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, sequential):
            out += _flatten(child, sequential, path)
        else:
            out.append((f"module {path} ({type(child).__name__})", child))
    return out
