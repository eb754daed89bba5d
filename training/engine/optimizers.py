"""Optimizers, kept apart from the network: they see only flat parameter and gradient
arrays and a state of named arrays.

The state is plain arrays (velocity, step count) so it can be written next to the
weights and restored bit for bit: online training then continues exactly where
offline training stopped, momentum included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.engine import blas

Array = np.ndarray
_BLOCK = 1 << 16  # elements per block of the update: a few of these fit in L2


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with classical or Nesterov momentum.

    classical: v <- mu v - eta g;  w <- w + v
    Nesterov (Sutskever et al. 2013, the form that needs no look-ahead pass):
               v <- mu v - eta g;  w <- w + mu v - eta g
    ``weight_decay`` adds lambda * w to the gradient of the weights selected by the
    decay mask (biases are not decayed); ``clip_norm`` rescales the whole gradient
    when its global L2 norm exceeds it.
    """

    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {self.clip_norm}")

    def init_state(self, params: Array) -> dict[str, Array]:
        return {"velocity": np.zeros_like(params), "step": np.zeros((), dtype=np.int64)}

    def step(
        self,
        params: Array,
        grads: Array,
        state: dict[str, Array],
        *,
        learning_rate: float | None = None,
        decay_mask: Array | None = None,
    ) -> None:
        """Update ``params`` and ``state`` in place.  ``grads`` is used as scratch."""
        lr = self.learning_rate if learning_rate is None else learning_rate
        mu = self.momentum
        v = state["velocity"]
        if self.weight_decay:
            grads += self.weight_decay * (params if decay_mask is None else params * decay_mask)
        if self.clip_norm is not None:
            norm = float(np.sqrt(np.dot(grads, grads)))
            if norm > self.clip_norm:
                grads *= self.clip_norm / norm
        fast = blas.routines(params, grads, v)
        if fast is not None:
            # Two or three passes, each split over the BLAS threads (training/engine/blas.py).
            fast.axpby(-lr, grads, mu, v)  # v <- mu v - eta g
            if self.nesterov:
                fast.axpy(mu, v, params)
                fast.axpy(-lr, grads, params)
            else:
                fast.axpy(1.0, v, params)
        else:
            self._numpy_update(params, grads, v, lr, mu)
        state["step"] += 1

    def _numpy_update(self, params: Array, grads: Array, v: Array, lr: float, mu: float) -> None:
        # Block by block, so that the four passes over each block run in L2 cache: the
        # step is bound by memory traffic, and this cut its time by a third on a
        # 670k-parameter network (bench/train_bench.py, 784-512-512-10).
        for start in range(0, params.size, _BLOCK):
            blk = slice(start, start + _BLOCK)
            g, vb, p = grads[blk], v[blk], params[blk]
            g *= lr  # from here on g holds eta * g
            vb *= mu
            vb -= g
            if self.nesterov:
                p += mu * vb
                p -= g
            else:
                p += vb
