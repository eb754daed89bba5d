"""Where the journal and the version store live, chosen by the settings.

Without ``BPSERVE_DATABASE_URL``: the folder store and one journal file per model
(one host).  With it: both in PostgreSQL (``training/pg_*``), the folder a local cache,
so replicas on different hosts share online learning.  The registry is the same either
way; this is the only place that knows which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.settings import Settings
from training import durable_io as dio
from training.journal import FileJournal, Journal
from training.store import ModelStore


@dataclass
class Backend:
    store: ModelStore
    journals: Callable[[str], Journal]


def open_backend(settings: Settings) -> Backend:
    """Open the storage of this worker (call it after the fork: it opens connections)."""
    if settings.database_url is None:
        store = ModelStore(settings.models_dir)
        return Backend(store, lambda name: FileJournal(store.model_dir(name)))
    from training.pg_db import Database
    from training.pg_journal import PostgresJournal
    from training.pg_store import PgStore

    db = Database(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size)
    db.open()
    pg_store = PgStore(settings.models_dir, db)
    pg_store.sync()  # the folder's versions the database lacks (the committed default model)

    def journal(name: str) -> PostgresJournal:
        folder = pg_store.model_dir(name)
        dio.mkdir(folder, parents=True, exist_ok=True)  # for the host's change counter
        return PostgresJournal(db, name, folder / ".pg-journal.changes")

    return Backend(pg_store, journal)
