import os

# One BLAS thread in the test process, as in every server and bptrain run the tests start
# (they inherit this environment; the service's default is one too).  On some CPUs
# OpenBLAS's multi-threaded GEMM sums in another order (seen on AMD EPYC, Haswell kernels,
# OpenBLAS 0.3.31), and tests compare the server's output bits with the test process's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import PgServer

ROOT = Path(__file__).resolve().parent.parent
CODE_RECOGNIZER = ROOT.parent / "shared" / "data" / "code-recognizer" / "testdata.200"


@pytest.fixture
def code_recognizer_path() -> Path:
    if not CODE_RECOGNIZER.is_file():
        pytest.fail(
            f"shared data set missing: {CODE_RECOGNIZER} (CI clones ../shared beside the repo)"
        )
    return CODE_RECOGNIZER


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL 15 for the session (started on first use, never skipped)."""
    server = PgServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database on the session's server; a test that crashed it gets it back."""
    if not pg_server.running:
        pg_server.start()
    return pg_server.create_database()
