"""Service configuration from the environment (prefix ``BPSERVE_``), via pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BPSERVE_", extra="ignore")

    models_dir: Path = Path("models")
    default_model: str = "digits"
    train_token: SecretStr | None = None
    train_token_file: Path | None = None  # a mounted secret; read once at start
    predict_token: SecretStr | None = None
    bind: str = "127.0.0.1:8000"
    # Every worker follows the training journal, so any number of workers agree.
    workers: int = Field(default=2, ge=1)
    threads: int = Field(default=4, ge=1)
    timeout: int = Field(default=30, ge=1)
    graceful_timeout: int = Field(default=20, ge=1)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_rows: int = Field(default=10_000, ge=1)
    reload_interval: float = Field(default=2.0, gt=0)
    # online steps between automatic snapshots (a new version, a compacted journal); 0: off
    snapshot_every: int = Field(default=1000, ge=0)
    # A kept-alive connection is closed after this many requests or seconds (0: never), so
    # that a client's persistent connections spread over the workers (service/worker.py).
    keepalive_requests: int = Field(default=100, ge=0)
    keepalive_seconds: float = Field(default=0, ge=0)
    blas_threads: int = Field(default=1, ge=1)
    log_requests: bool = True
    # A folder the workers of one server share for state that is not in the store (set
    # by the gunicorn config at every start; unset, each process keeps its own).
    state_dir: Path | None = None
    # postgresql://...: the journal and the version store live in that database, and
    # models_dir is this replica's cache of it (docs/scaling.md).  Unset: files only.
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=4, ge=1)
    # How long a request with X-Bpserve-Min-Step waits for that step, then 503.
    min_step_wait: float = Field(default=2.0, ge=0, le=30)

    def train_secret(self) -> bytes | None:
        """The token that state-changing endpoints require; None disables them."""
        if self.train_token_file is not None:
            return self.train_token_file.read_text().strip().encode() or None
        if self.train_token is not None:
            return self.train_token.get_secret_value().encode() or None
        return None

    def predict_secret(self) -> bytes | None:
        return self.predict_token.get_secret_value().encode() if self.predict_token else None
