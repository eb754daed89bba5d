"""Where a large JSON request's time goes, piece by piece (the profile behind BENCHMARKS.md).

Part 1, in process (timeit, best of 3), for /predict and V2 JSON infer with 1 and 1,000
rows of the digits model's 64 features: each piece of the strict path (pydantic from
the bytes, the rows to an array, the forward pass, the reply by ``tolist`` and pydantic
or ``json``), each piece of the numeric fast path (``service.fastjson``: simdjson's
numbers as one buffer, checks on the array, orjson writing numpy), and the whole of each.
Part 2, live: what reading the body costs in a worker, as bpserve's 1,000-row /predict
beside a route of the same server that answers without reading it (``/v2/health/live``)
under the same body, in the same rounds of wrk.  Part 3: where the fast path starts to pay.

    .venv/bin/python bench/json_profile.py
    .venv/bin/python bench/json_profile.py --parts 2 --seconds 3 --rounds 3
    .venv/bin/python bench/json_profile.py --parts 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def ms(fn, n: int) -> float:
    return round(min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e3, 4)


def rows(n: int) -> list[list[float]]:
    return np.random.default_rng(0).uniform(0, 16, size=(n, 64)).round(2).tolist()


def predict_pieces(n_rows: int, model) -> dict:
    from service import fastjson
    from service.schemas import PredictRequest, PredictResponse, parse, to_matrix

    reps = 20 if n_rows >= 100 else 2000
    body = json.dumps({"inputs": rows(n_rows)}).encode()
    req = parse(PredictRequest, body)
    x = to_matrix(req.inputs, "inputs", 64, 10_000, np.float32)
    out = model.output(x)
    fast = fastjson.predict_request(body)

    def strict_reply() -> str:  # as service/routes/predict.py built it before the fast path
        v = out.tolist()
        return PredictResponse.model_construct(
            model="digits", version=1, outputs=v, labels=model.predict_labels(out, v)
        ).model_dump_json()

    def fast_reply() -> bytes:  # as service/routes/predict.py builds it
        few = out.tolist() if len(out) <= 64 else None
        vals = few if few is not None else fastjson.reply_values(out)
        labels = model.predict_labels(out, few)
        return fastjson.dumps({"model": "digits", "version": 1, "outputs": vals, "labels": labels})

    def strict_whole():
        xx = to_matrix(parse(PredictRequest, body).inputs, "inputs", 64, 10_000, np.float32)
        return strict_reply_of(model.output(xx))

    def strict_reply_of(o):
        v = o.tolist()
        return PredictResponse.model_construct(
            model="digits", version=1, outputs=v, labels=model.predict_labels(o, v)
        ).model_dump_json()

    def fast_whole():
        xx = fastjson.predict_request(body).matrix(64, 10_000, np.float32)
        o = model.output(xx)
        few = o.tolist() if len(o) <= 64 else None
        vals = few if few is not None else fastjson.reply_values(o)
        labels = model.predict_labels(o, few)
        return fastjson.dumps({"model": "digits", "version": 1, "outputs": vals, "labels": labels})

    return {
        "case": f"/predict, {n_rows} rows, in process (ms)",
        "body_kb": round(len(body) / 1024, 1),
        "strict: pydantic from the bytes": ms(lambda: parse(PredictRequest, body), reps),
        "strict: rows to array + checks": ms(
            lambda: to_matrix(req.inputs, "inputs", 64, 10_000, np.float32), reps
        ),
        "strict: reply (tolist, labels, pydantic dump)": ms(strict_reply, reps),
        "forward pass": ms(lambda: model.output(x), reps),
        "fast: simdjson parse + number buffer + shape checks": ms(
            lambda: fastjson.predict_request(body), reps
        ),
        "fast: cast + finite check": ms(lambda: fast.matrix(64, 10_000, np.float32), reps),
        "fast: reply (labels, orjson numpy)": ms(fast_reply, reps),
        "strict: whole": ms(strict_whole, reps),
        "fast: whole": ms(fast_whole, reps),
    }


def infer_pieces(n_rows: int, model) -> dict:
    from service import v2_codec

    reps = 20 if n_rows >= 100 else 2000
    tensor = {"name": "input", "shape": [n_rows, 64], "datatype": "FP32", "data": rows(n_rows)}
    head = json.dumps({"inputs": [tensor]}).encode()
    x = np.asarray(rows(n_rows), dtype=np.float32)
    out = model.output(x)
    strict = v2_codec.InferRequest.model_validate_json(head)

    def strict_reply() -> bytes:  # as service/routes/v2.py built it before
        outputs = [
            {"name": "output", "datatype": "FP32", "shape": [n_rows, 10]},
            {"name": "label", "datatype": "BYTES", "shape": [n_rows]},
        ]
        outputs[0]["data"] = out.ravel().tolist()
        outputs[1]["data"] = model.predict_labels(out)
        return json.dumps({"model_name": "d", "model_version": "1", "outputs": outputs}).encode()

    def fast_reply() -> bytes:
        entries = [
            ({"name": "output", "datatype": "FP32", "shape": [n_rows, 10]}, out, None),
            (
                {"name": "label", "datatype": "BYTES", "shape": [n_rows]},
                model.predict_labels(out),
                None,
            ),
        ]
        return v2_codec.reply({"model_name": "d", "model_version": "1"}, entries)[0]

    return {
        "case": f"V2 JSON infer, {n_rows} rows, in process (ms)",
        "body_kb": round(len(head) / 1024, 1),
        "strict: pydantic from the bytes": ms(
            lambda: v2_codec.InferRequest.model_validate_json(head), reps
        ),
        "strict: data to array": ms(
            lambda: np.asarray(strict.inputs[0].data, dtype="<f4").reshape(-1), reps
        ),
        "strict: reply (tolist, labels, json.dumps)": ms(strict_reply, reps),
        "fast: header (simdjson, numbers, small pydantic)": ms(
            lambda: v2_codec.parse_header(head), reps
        ),
        "fast: reply (labels, orjson numpy)": ms(fast_reply, reps),
        "labels alone": ms(lambda: model.predict_labels(out), reps),
    }


def crossover() -> list[dict]:
    """Part 3: parse and array alone, strict against simdjson, from 1 to 100 rows (the
    measurement behind ``fastjson.MIN_BYTES``; the size check itself is bypassed here)."""
    from service import fastjson
    from service.schemas import PredictRequest, parse, to_matrix

    out, saved = [], fastjson.MIN_BYTES
    fastjson.MIN_BYTES = 0
    try:
        for n in (1, 2, 4, 8, 32, 100):
            body = json.dumps({"inputs": rows(n)}).encode()
            reps = max(20, 4000 // n)
            strict = ms(
                lambda b=body: to_matrix(
                    parse(PredictRequest, b).inputs, "inputs", 64, 10_000, np.float32
                ),
                reps,
            )
            fast = ms(
                lambda b=body: fastjson.predict_request(b).matrix(64, 10_000, np.float32), reps
            )
            out.append(
                {
                    "case": "parse + array, in process (ms)",
                    "rows": n,
                    "body_bytes": len(body),
                    "strict": strict,
                    "simdjson": fast,
                }
            )
    finally:
        fastjson.MIN_BYTES = saved
    return out


def live(seconds: int, rounds: int) -> list[dict]:
    """Part 2: the whole 1,000-row /predict beside the same body sent to a route that
    does not read it (the stack's cost for receiving 394 KB)."""
    from serve_bench import ensure_wrk, lua_post_bytes, rounds_of_wrk

    from tests.server import Server, make_store

    wrk = ensure_wrk()
    body = json.dumps({"inputs": rows(1000)}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = Server(make_store(tmp / "models"), log_requests="false", workers=1).start()
        try:
            script = lua_post_bytes(tmp / "b.lua", body, {"Content-Type": "application/json"})
            cases = [
                ("POST /predict, 1,000 rows", "/predict", 1000, script),
                ("GET /v2/health/live (no body)", "/v2/health/live", 0, None),
            ]
            url = f"http://127.0.0.1:{server.port}"
            return rounds_of_wrk(wrk, url, cases, seconds, 4, rounds)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="1,3", help="1 in process, 2 live, 3 small bodies")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    if 1 in parts:
        from service import fastjson
        from training.store import ModelStore

        fastjson.MIN_BYTES = 0  # the 1-row fast figures: what that path would cost there

        model, _ = ModelStore(ROOT / "models").load("digits")
        for n in (1, 1000):
            print(json.dumps(predict_pieces(n, model)), flush=True)
            print(json.dumps(infer_pieces(n, model)), flush=True)
    if 3 in parts:
        for r in crossover():
            print(json.dumps(r), flush=True)
    if 2 in parts:
        for r in live(args.seconds, args.rounds):
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
