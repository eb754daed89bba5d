"""What a worker serves for one model: an immutable state, replaced whole on every change.

A prediction takes one ``Served`` and uses only it, so it always sees one whole,
consistent set of weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from service import idempotency
from training.journal import Position
from training.model import Model
from training.online import StepResult
from training.store import Manifest


@dataclass(frozen=True)
class OnlineStats:
    """Progressive validation: each labelled batch scored by the weights before its step."""

    rows: int = 0
    correct: int = 0
    loss_sum: float = 0.0

    def add(self, rows: int, correct: int, loss: float) -> OnlineStats:
        return OnlineStats(self.rows + rows, self.correct + correct, self.loss_sum + loss * rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accuracy": self.correct / self.rows if self.rows else None,
            "loss": self.loss_sum / self.rows if self.rows else None,
        }


@dataclass(frozen=True)
class Served:
    name: str
    version: int
    model: Model
    manifest: Manifest
    online_steps: int = 0
    pinned: bool = False
    online: OnlineStats = field(default_factory=OnlineStats)
    segment: str = ""  # id of the journal segment (the base record) this state follows
    position: Position | None = None  # journal position after the last applied record
    # Idempotency-Keys of this segment (and carried into it): shared by the states of
    # one segment, added to only after the record holding the key is durable.
    keys: idempotency.Keys = field(default_factory=dict, compare=False, repr=False)

    def stepped(self, result: StepResult, rows: int, position: Position | None) -> Served:
        """The state after one online step: a live one and its replay both build it here."""
        return replace(
            self,
            model=result.model,
            online_steps=self.online_steps + 1,
            position=position,
            online=self.online.add(rows, result.correct, result.loss_before),
        )

    def step_answer(self, result: StepResult) -> dict[str, Any]:
        """What the step after this state answers (and a retry with its key is answered)."""
        return {
            "version": self.version,
            "step": self.online_steps + 1,
            "loss_before": result.loss_before,
            "loss_after": result.loss_after,
        }

    def weights_digest(self) -> str:
        """sha256 of the weights and optimizer state: equal across workers that agree."""
        h = hashlib.sha256(self.model.network.params.tobytes())
        h.update(self.model.optimizer_state["velocity"].tobytes())
        return h.hexdigest()
