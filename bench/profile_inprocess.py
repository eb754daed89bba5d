"""bench/serve_profile.py's parts 1 and 2, in process and in a fresh child: each step of
the 1-row handler (timeit), its numpy steps with whole requests between them, and the
1,000-row forward pass with glibc's default thresholds and after keep_freed_memory()."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import timeit

import numpy as np
from profile_common import ROOT, ROW


def us(fn, n: int = 3000) -> float:
    return round(min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6, 1)


def handler_pieces() -> dict:
    from service import metrics
    from service.schemas import PredictRequest, PredictResponse, parse, to_matrix
    from training.store import ModelStore

    model, _ = ModelStore(ROOT / "models").load("digits")
    body = json.dumps({"inputs": ROW}).encode()
    req = parse(PredictRequest, body)
    x = to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)
    out = model.predict(x)

    def reply(out: np.ndarray) -> str:  # as service/routes/predict.py builds it
        values = out.tolist()
        return PredictResponse.model_construct(
            model="digits", version=1, outputs=values, labels=model.predict_labels(out, values)
        ).model_dump_json()

    return {
        "case": "1-row handler pieces, in process (us)",
        "parse_and_validate": us(lambda: parse(PredictRequest, body)),
        "to_array": us(lambda: to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)),
        "forward": us(lambda: model.predict(x)),
        "reply": us(lambda: reply(out)),
        "metrics": us(
            lambda: (
                metrics.request("/predict", 200, 0.001, "digits", "1"),
                metrics.predicted("digits", 1, 1),
            )
        ),
    }


FORWARD_CHILD = textwrap.dedent("""
    import sys, timeit, numpy as np
    sys.path.insert(0, {root!r})
    from threadpoolctl import threadpool_limits
    from training.store import ModelStore
    if sys.argv[1] == "raised":
        from service.malloc import keep_freed_memory
        assert keep_freed_memory()
    model, _ = ModelStore({models!r}).load("digits")
    x = np.random.default_rng(0).uniform(0, 16, size=(1000, 64)).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):
        print(min(timeit.repeat(lambda: model.predict(x), number=300, repeat=3)) / 300 * 1e3)
""")


def forward_malloc() -> dict:
    code = FORWARD_CHILD.format(root=str(ROOT), models=str(ROOT / "models"))
    ms = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("default", "raised")
    }
    return {
        "case": "1,000-row forward pass (ms), one BLAS thread",
        "glibc_defaults": round(ms["default"], 3),
        "keep_freed_memory": round(ms["raised"], 3),
    }


INTERLEAVED_CHILD = textwrap.dedent("""
    import json, os, sys, tempfile, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, {root!r})
    from threadpoolctl import threadpool_limits
    from tests.server import make_store
    os.environ["BPSERVE_MODELS_DIR"] = str(make_store(Path(tempfile.mkdtemp())))
    os.environ["BPSERVE_LOG_REQUESTS"] = "false"
    from service.app import create_app
    from service.schemas import PredictRequest, parse, to_matrix
    from training.store import ModelStore
    threadpool_limits(1, user_api="blas")
    client = create_app().test_client()
    model, _ = ModelStore({models!r}).load("digits")
    req = parse(PredictRequest, json.dumps({{"inputs": {row!r}}}).encode())
    def numpy_steps():
        x = to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)
        out = model.output(x)
        return out.tolist(), model.predict_labels(out)
    result = {{}}
    for between in (0, 1, 3, 0, 1, 3):
        spent = 0.0
        for _ in range(1000):
            for _ in range(between):
                client.get("/healthz")
            t0 = time.perf_counter()
            numpy_steps()
            spent += time.perf_counter() - t0
        us = round(spent / 1000 * 1e6, 1)
        result[between] = min(us, result.get(between, us))
    print(json.dumps(result))
""")


def interleaved() -> dict:
    """The 1-row handler's numpy steps, alone in a loop and with whole in-process requests
    (Flask's test client, /healthz) run between them, as a live worker runs them."""
    code = INTERLEAVED_CHILD.format(root=str(ROOT), models=str(ROOT / "models"), row=ROW)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    us = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "case": "1-row numpy steps (to array, forward, reply values), us, best of 2 rounds",
        "alone": us["0"],
        "after_1_request": us["1"],
        "after_3_requests": us["3"],
    }
