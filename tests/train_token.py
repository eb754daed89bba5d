"""The train token of the service tests' ``server`` fixture (tests/conftest.py)."""

from __future__ import annotations

TOKEN = "s3cret-token"
