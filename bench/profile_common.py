"""What every part of bench/serve_profile.py shares: the repository on the import path and
the 1-row request body the parts send."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ROW = np.random.default_rng(0).uniform(0, 16, size=(1, 64)).round(2).tolist()
