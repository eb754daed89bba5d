"""/metrics after known traffic through two workers: the values, summed over workers by
prometheus_client's multiprocess mode, equal what was sent."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.server import serve_copy
from training.data import load_digits

TOKEN = "metrics-token"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_the_traffic_sent(tmp_path):
    digits = load_digits()
    predict_rows = [1, 3, 5, 2, 7, 1, 4]
    steps, accuracies, losses = 6, [], []
    server_gen = serve_copy(tmp_path, train_token=TOKEN, snapshot_every=0, workers=2)
    server = next(server_gen)
    try:
        workers = set()
        for k, n in enumerate(predict_rows):
            status, _, head = server.call(
                "POST", "/predict", {"inputs": digits.x[k * 10 : k * 10 + n].tolist()}
            )
            assert status == 200
            workers.add(head["X-Bpserve-Worker"])
        for k in range(steps):
            body = {
                "inputs": digits.x[k * 8 : k * 8 + 8].tolist(),
                "targets": [str(v) for v in digits.y[k * 8 : k * 8 + 8]],
            }
            assert server.request("POST", "/train-step", body, token=TOKEN)[0] == 200
            online = server.request("GET", "/models/digits")[1]["online"]
            accuracies.append(online["accuracy"])
            losses.append(online["loss"])
        refused = {"inputs": [[16.0] * 64], "targets": [[1e30] * 10], "learning_rate": 100}
        status, reply = server.request("POST", "/train-step", refused, token=TOKEN)
        assert (status, reply["error"]["code"]) == (422, "non_finite_step")
        assert server.request("POST", "/predict", {"inputs": [[0.0] * 63]})[0] == 422
        assert server.request("POST", "/train-step", {"inputs": [[0.0] * 64]})[0] == 401
        scraped = samples(server.request("GET", "/metrics")[1])
    finally:
        server_gen.close()

    v1 = {"model": "digits", "version": "1"}
    assert value(scraped, "bpserve_rows_predicted_total", **v1) == sum(predict_rows)
    assert value(scraped, "bpserve_train_steps_total", **v1) == steps
    assert value(scraped, "bpserve_train_steps_refused_total", model="digits") == 1
    requests = "bpserve_requests_total"
    assert value(scraped, requests, endpoint="/predict", status="200", **v1) == len(predict_rows)
    assert value(scraped, requests, endpoint="/train-step", status="200", **v1) == steps
    # refusals, under the labels they were known by: the bad row's model and version
    # (checked against them), the refused step's model (no version: nothing applied),
    # the missing token's nothing (refused before any model was looked at)
    refusals = [
        ("/predict", "422", "digits", "1"),
        ("/train-step", "422", "digits", ""),
        ("/train-step", "401", "", ""),
    ]
    for endpoint, status, model, version in refusals:
        labels = {"endpoint": endpoint, "status": status, "model": model, "version": version}
        assert value(scraped, requests, **labels) == 1, labels
    latency = "bpserve_request_duration_seconds_count"
    # latency has no status label: the refused row of /predict is timed with the others
    assert value(scraped, latency, endpoint="/predict", **v1) == len(predict_rows) + 1
    assert value(scraped, latency, endpoint="/train-step", **v1) == steps
    assert value(scraped, "bpserve_served_version", model="digits") == 1
    # The online gauges are each worker's last value, and the scrape shows the largest
    # of the live workers' ('livemax'): one of the values the steps went through, and
    # no smaller than the last.
    accuracy = value(scraped, "bpserve_online_accuracy", **v1)
    loss = value(scraped, "bpserve_online_loss", **v1)
    assert accuracy in accuracies and accuracy >= accuracies[-1]
    assert loss in losses and loss >= losses[-1]


def test_v2_requests_are_counted_under_their_model_and_version(tmp_path):
    # The V2 routes label their requests as the native ones do: a dashboard that sums
    # bpserve_requests_total by model must not lose the V2 traffic to model="".
    digits = load_digits()
    server_gen = serve_copy(tmp_path, train_token=TOKEN, snapshot_every=0, workers=2)
    server = next(server_gen)
    try:
        rows = digits.x[:3].tolist()
        tensor = {"name": "input", "shape": [3, 64], "datatype": "FP32", "data": rows}
        for _ in range(4):
            status, _ = server.request("POST", "/v2/models/digits/infer", {"inputs": [tensor]})
            assert status == 200
        target = {
            "name": "target",
            "shape": [3],
            "datatype": "BYTES",
            "data": [str(v) for v in digits.y[:3]],
        }
        body = {"inputs": [tensor, target]}
        status, _ = server.request("POST", "/v2/models/digits/train", body, token=TOKEN)
        assert status == 200
        scraped = samples(server.request("GET", "/metrics")[1])
    finally:
        server_gen.close()
    requests = "bpserve_requests_total"
    infer = {"endpoint": "/v2/models/<name>/infer", "status": "200"}
    assert value(scraped, requests, **infer, model="digits", version="1") == 4
    assert value(scraped, requests, **infer, model="", version="") == 0
    train = {"endpoint": "/v2/models/<name>/train", "status": "200", "model": "digits"}
    assert value(scraped, requests, **train, version="1") == 1
    assert value(scraped, "bpserve_rows_predicted_total", model="digits", version="1") == 12
