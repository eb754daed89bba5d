"""A version's manifest (``manifest.json``): what the version is and how to load it.

Strict (unknown keys are refused) so that a manifest written by a newer bpserve is not
half-understood; ``format_version`` says which layout a version uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# 2: column preprocessing (training/preprocessing.py) and regression target scaling;
# format 1 (mean and scale per feature) still loads and serves as before.
FORMAT_VERSION = 2
READS = (1, 2)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Architecture(_Strict):
    sizes: list[int] = Field(min_length=2)
    activations: list[str]
    loss: str


class Inputs(_Strict):
    n_features: int = Field(ge=1)
    feature_names: list[str] | None = None


class Preprocessing(_Strict):
    """Format 1: ``mean`` and ``scale``; format 2 holds ``clip`` and ``columns`` instead
    (training/preprocessing.py reads and checks them)."""

    mean: list[float] | None = None
    scale: list[float] | None = None
    clip: float | None = None
    columns: list[dict[str, Any]] | None = None


class OptimizerConfig(_Strict):
    learning_rate: float
    momentum: float
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: float | None = None


class Manifest(_Strict):
    format_version: Literal[1, 2]
    name: str
    version: int = Field(ge=1)
    parent_version: int | None = None
    online_steps: int = 0
    created_at: datetime
    architecture: Architecture
    dtype: Literal["float32", "float64"]
    inputs: Inputs
    labels: list[str] | None = None
    preprocessing: Preprocessing
    targets: dict[str, list[float]] | None = None  # regression: offset and scale per output
    optimizer: OptimizerConfig
    training: dict[str, Any] = {}
    data_fingerprint: str | None = None
    metrics: dict[str, float | int | None] = {}
    files: dict[str, str]
