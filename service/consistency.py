"""Read-your-writes across replicas: ``X-Bpserve-Min-Step``.

With a shared journal (PostgreSQL), a replica learns of a step another replica
acknowledged by a notification, a moment later.  Every reply that reflects a served
state says where in the journal that state stands (``X-Bpserve-Step``: the journal's
sequence number, which a train-step reply carries for its own step).  A client that
must see a step sends that number back as ``X-Bpserve-Min-Step``; the replica waits
until it has applied it (at most ``BPSERVE_MIN_STEP_WAIT`` seconds, checking the
database itself rather than trusting the notification alone), or answers 503
``step_not_applied``.  The file journal on one host needs none of this (every worker is
current for every acknowledged step) and ignores the header.
"""

from __future__ import annotations

from flask import Flask, g, request

from service.errors import ApiError
from service.registry import Registry
from service.served import Served

HEADER, MIN_HEADER = "X-Bpserve-Step", "X-Bpserve-Min-Step"
POLL = 0.05  # seconds between checks of the database while waiting


def sequence(registry: Registry, served: Served) -> int | None:
    journal = registry.journal(served.name)
    if not getattr(journal, "sequenced", False) or served.position is None:
        return None
    return served.position.offset


def served_at_least(registry: Registry, name: str, wait: float) -> Served:
    """``registry.get(name)``, once it holds the step the client asked for."""
    served = registry.get(name)  # 404 for a model not served, before anything else
    raw = request.headers.get(MIN_HEADER)
    seq = sequence(registry, served)
    if raw is not None and seq is not None:
        if not raw.strip().isdigit():
            raise ApiError(400, "invalid_header", f"{MIN_HEADER} must be a step number")
        want = int(raw)
        journal = registry.journal(name)
        for _ in range(max(1, int(wait / POLL))):
            if seq >= want:
                break
            heard = journal.changes()  # before the check: a change after it ends the wait
            served = registry.get(name, full_check=True)
            seq = sequence(registry, served) or 0
            if seq < want:
                journal.wait(heard, POLL)  # type: ignore[attr-defined]
        if seq < want:
            raise ApiError(
                503,
                "step_not_applied",
                f"step {want} of {name!r} is not applied here yet (at {seq}); retry",
                {"applied": seq, "wanted": want},
                {"Retry-After": "1"},
            )
    g.journal_seq = seq
    return served


def note(registry: Registry, name: str) -> None:
    """Say where this worker's state of ``name`` stands, after a change it made."""
    served = registry.all().get(name)
    if served is not None:
        g.journal_seq = sequence(registry, served)


def install(app: Flask) -> None:
    @app.after_request
    def _say_where(resp):
        seq = g.get("journal_seq")
        if seq is not None:
            resp.headers[HEADER] = str(seq)
        return resp
