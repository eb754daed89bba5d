import os
import time

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
from tests.server import Server, make_store
from tests.train_token import TOKEN
from training.data import load_digits
from training.pg_db import Database

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


@pytest.fixture
def db(pg_url):
    d = Database(pg_url, pool_size=2)
    d.open()
    yield d
    d.close()


# The replica tests' two servers (tests/test_replica*.py, helpers in tests/replicas.py).


@pytest.fixture
def pair(tmp_path, pg_url):
    """Replica a seeded with the committed model, replica b with an empty folder."""
    from tests.replicas import TOKEN as REPLICAS_TOKEN  # here: it loads the digits data
    from tests.replicas import call

    env = {"database_url": pg_url, "train_token": REPLICAS_TOKEN, "snapshot_every": 0}
    a = Server(make_store(tmp_path / "a"), workers=2, **env).start()
    (tmp_path / "b").mkdir()
    b = Server(tmp_path / "b", workers=2, **env)
    try:
        b.start()
        # start() saw one worker ready; under a loaded suite b's other worker can still be
        # loading the model from the database (seen: a step refused 404 there).  Wait
        # until both workers (told apart by X-Bpserve-Worker) have said ready.
        ready: set[str] = set()
        for _ in range(300):
            status, _, hdrs = call(b.port, "GET", "/readyz")
            if status == 200:
                ready.add(hdrs["X-Bpserve-Worker"])
            if len(ready) == 2:
                break
            time.sleep(0.1)
        assert len(ready) == 2, f"replica b: only workers {ready} became ready"
        yield a, b, pg_url
    finally:
        for s in (b, a):
            s.stop()


# The service tests' server over real HTTP (tests/test_service*.py; its train token is
# tests/train_token.py's).  Modules that define their own ``digits`` or ``server`` keep them.


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture
def store_dir(tmp_path):
    return make_store(tmp_path / "models")


@pytest.fixture
def server(store_dir):
    with Server(store_dir, train_token=TOKEN) as s:
        yield s
