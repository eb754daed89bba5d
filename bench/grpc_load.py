"""A closed-loop load generator in Python, for the binary paths wrk cannot drive.

Why: MLServer's REST API has no binary tensor extension; its binary path is gRPC (the V2
inference protocol's ``inference.GRPCInferenceService/ModelInfer``), and wrk speaks only
HTTP/1.1.  So that two servers' binary paths are measured with the same kind of client,
this one script drives both MLServer's gRPC and bpserve's V2 binary over HTTP/1.1.

Like wrk -t1 -cN: N threads in one process, each with a connection of its own (a gRPC
channel with its own subchannel pool, or an ``http.client`` connection kept alive and
reopened when the server closes it), each sending its next request as soon as the
previous answer has been read, for the given seconds.  The request's bytes are made
once (for gRPC the serialized ``ModelInferRequest``) and each answer's bytes are read
but not decoded, as wrk does.  Its figures are comparable with this script's own, not
with wrk's: a Python client spends more CPU per request than wrk, on the same cores as
the servers.  Prints one JSON line: ``rps``, ``p50_ms``, ``p99_ms``, ``non_2xx``
(answers that were not HTTP 2xx or gRPC OK) and ``socket_errors``.

Run by MLServer's virtual environment's python (grpcio and mlserver's generated stubs;
bench/peer_bench.py does); the http mode needs only the standard library.

    python bench/grpc_load.py grpc --port P --rows x.npy --contents raw --seconds 5
    python bench/grpc_load.py grpc --port P --rows x.npy --contents fp32 --labels
    python bench/grpc_load.py http --port P --path /v2/models/digits/infer --body b.bin \\
        --header Content-Type=application/octet-stream --seconds 5
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def infer_request(rows_file: Path, contents: str, model: str = "digits") -> bytes:
    """A serialized ModelInferRequest of the rows in a .npy file: FP32 ``raw_input_contents``
    (the binary form) or ``contents.fp32_contents`` (one protobuf float per value)."""
    import numpy as np
    from mlserver.grpc import dataplane_pb2 as pb

    x = np.load(rows_file).astype(np.float32)
    req = pb.ModelInferRequest(model_name=model)
    tensor = req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    if contents == "raw":
        req.raw_input_contents.append(x.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
    return req.SerializeToString()


def labels_of(reply: bytes) -> list[int]:
    """The first output of a ModelInferResponse (MLServer's default: the labels), from
    ``raw_output_contents`` or from the typed contents, whichever the server used."""
    import numpy as np
    from mlserver.grpc import dataplane_pb2 as pb

    resp = pb.ModelInferResponse.FromString(reply)
    out = resp.outputs[0]
    if resp.raw_output_contents:
        wire = {"INT64": "<i8", "INT32": "<i4", "FP32": "<f4", "FP64": "<f8"}[out.datatype]
        return np.frombuffer(resp.raw_output_contents[0], dtype=wire).astype(int).tolist()
    c = out.contents
    return [int(v) for v in (c.int64_contents or c.int_contents or c.fp32_contents)]


def grpc_sender(port: int, body: bytes) -> Callable[[], Callable[[], bool]]:
    """Per thread: a channel of its own (a local subchannel pool, so one TCP connection
    each), calling ModelInfer with the ready bytes; an answer not OK counts as non-2xx."""
    import grpc

    def make() -> Callable[[], bool]:
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        grpc.channel_ready_future(channel).result(timeout=30)
        call = channel.unary_unary(MODEL_INFER)  # no serializers: bytes in, bytes out

        def send() -> bool:
            try:
                call(body, timeout=30)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    raise OSError(str(e.code())) from e
                return False
            return True

        return send

    return make


def http_sender(
    port: int, path: str, body: bytes, headers: dict[str, str]
) -> Callable[[], Callable[[], bool]]:
    """Per thread: one kept-alive HTTP/1.1 connection (reopened by ``http.client`` when
    the server closes it, as bpserve does every 100 requests), POSTing the ready bytes."""

    def make() -> Callable[[], bool]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.connect()

        def send() -> bool:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return 200 <= resp.status < 300

        return send

    return make


def closed_loop(make: Callable[[], Callable[[], bool]], seconds: float, connections: int) -> dict:
    """``connections`` threads, each sending on its own connection until ``seconds`` have
    passed; every answer's round trip counted, as wrk does (one started before the end is
    waited for).  A connection that fails is made anew and counted as a socket error."""
    senders = [make() for _ in range(connections)]
    times: list[list[float]] = [[] for _ in senders]
    bad = [0] * connections
    errors = [0] * connections
    start_line = threading.Barrier(connections + 1)
    deadline = 0.0

    def run(i: int) -> None:
        send = senders[i]
        start_line.wait()
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            try:
                ok = send()
            except OSError:
                errors[i] += 1
                send = make()
                continue
            times[i].append(time.perf_counter() - t0)
            bad[i] += not ok

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline = start + seconds
    start_line.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    every = sorted(x for ts in times for x in ts)
    return {
        "rps": round(len(every) / elapsed, 1),
        "p50_ms": round(percentile(every, 50) * 1000, 3),
        "p99_ms": round(percentile(every, 99) * 1000, 3),
        "non_2xx": sum(bad),
        "socket_errors": f"{sum(errors)} reconnects" if sum(errors) else None,
        "requests": len(every),
    }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank of a sorted list (0.0 when empty: no answer at all)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=("grpc", "http"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rows", type=Path, help="grpc: a .npy of the rows")
    parser.add_argument("--contents", choices=("raw", "fp32"), default="raw")
    parser.add_argument("--labels", action="store_true", help="grpc: one call, print labels")
    parser.add_argument("--path", help="http: the path to POST to")
    parser.add_argument("--body", type=Path, help="http: a file of the request's bytes")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    if args.transport == "grpc":
        body = infer_request(args.rows, args.contents)
        if args.labels:
            import grpc

            with grpc.insecure_channel(f"127.0.0.1:{args.port}") as channel:
                reply = channel.unary_unary(MODEL_INFER)(body, timeout=30, wait_for_ready=True)
            print(json.dumps(labels_of(reply)))
            return
        make = grpc_sender(args.port, body)
    else:
        headers = dict(h.split("=", 1) for h in args.header)
        make = http_sender(args.port, args.path, args.body.read_bytes(), headers)
    print(json.dumps(closed_loop(make, args.seconds, args.connections)), flush=True)


if __name__ == "__main__":
    main()
