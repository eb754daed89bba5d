"""Models from PyTorch and scikit-learn, through the files their own exporters write
(torch.onnx.export, skl2onnx) and `bptrain import`: served by the real gunicorn server,
they answer what their frameworks compute, take train-steps, and keep those steps
across a restart.  Unsupported graphs are refused naming the node."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from skl2onnx import to_onnx
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.server import ROOT, Server, make_store
from training.data import load_digits
from training.interop import from_sklearn, from_torch
from training.online import apply_step
from training.store import ModelStore

TOKEN = "interop-token"
TOL = {"rtol": 1e-5, "atol": 1e-5}
LETTERS = np.array(list("abcdefghij"))


def bptrain(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "training", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def data():
    ds = load_digits()
    x = ds.x.astype(np.float32) / 16.0  # the frameworks' own models get no standardisation
    return x, ds.y


def torch_module(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 24),
        torch.nn.Tanh(),
        torch.nn.Linear(24, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 10),
        torch.nn.Softmax(dim=1),
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory, data):
    """Framework models exported by their own tools, imported with bptrain import."""
    x, y = data
    tmp = tmp_path_factory.mktemp("frameworks")
    store_dir = make_store(tmp / "models")
    expected = {}
    for dynamo in (True, False):
        module = torch_module(int(dynamo)).eval()
        name = f"torch-{'dynamo' if dynamo else 'legacy'}"
        path = tmp / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.from_numpy(x[:2]),),
                str(path),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}},
                dynamo=dynamo,
            )
        expected[name] = (module, lambda rows, m=module: m(torch.from_numpy(rows)).detach().numpy())
        run = bptrain("import", path, "--name", name, "--models-dir", store_dir, "--lr", 0.02)
        assert run.returncode == 0, run.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: few iterations on purpose
        for name, est, target in [
            ("skl-multi", MLPClassifier((20,), activation="tanh", max_iter=30, random_state=0), y),
            ("skl-binary", MLPClassifier((12, 6), max_iter=30, random_state=0), y % 2),
            (
                "skl-pipe",
                make_pipeline(
                    StandardScaler(),
                    MLPClassifier((8,), activation="identity", max_iter=30, random_state=0),
                ),
                LETTERS[y],
            ),
            (
                "skl-reg",
                MLPRegressor(hidden_layer_sizes=(16,), max_iter=30, random_state=0),
                np.stack([y / 9.0, (y % 3) / 2.0], axis=1),
            ),
        ]:
            est.fit(x, target)
            path = tmp / f"{name}.onnx"
            path.write_bytes(to_onnx(est, x[:1]).SerializeToString())
            fn = est.predict_proba if hasattr(est, "predict_proba") else est.predict
            expected[name] = (est, fn)
            run = bptrain("import", path, "--name", name, "--models-dir", store_dir)
            assert run.returncode == 0, run.stderr
    server = Server(store_dir, train_token=TOKEN, snapshot_every=0).start()
    yield server, expected
    server.stop()


NAMES = ["torch-dynamo", "torch-legacy", "skl-multi", "skl-binary", "skl-pipe", "skl-reg"]


@pytest.mark.parametrize("name", NAMES)
def test_serves_what_the_framework_computes(imported, data, name):
    server, expected = imported
    x, _ = data
    rows = x[1500:1540]
    status, reply = server.request("POST", f"/models/{name}/predict", {"inputs": rows.tolist()})
    assert status == 200, reply
    want = np.asarray(expected[name][1](rows), dtype=np.float64).reshape(len(rows), -1)
    np.testing.assert_allclose(np.array(reply["outputs"]), want, **TOL)
    est = expected[name][0]
    if hasattr(est, "classes_"):
        assert reply["labels"] == [str(c) for c in est.predict(rows)]


@pytest.mark.parametrize("name", NAMES)
def test_train_steps_survive_a_restart(imported, data, name):
    server, _ = imported
    x, y = data
    rows = x[:16].tolist()
    if name == "skl-reg":
        targets = np.stack([y[:16] / 9.0, (y[:16] % 3) / 2.0], axis=1).tolist()
    elif name == "skl-binary":
        targets = [str(v % 2) for v in y[:16]]
    elif name == "skl-pipe":
        targets = LETTERS[y[:16]].tolist()
    else:
        targets = [str(v) for v in y[:16]]
    _, before = server.request("POST", f"/models/{name}/predict", {"inputs": rows})
    for i in range(3):
        status, reply = server.request(
            "POST", f"/models/{name}/train-step", {"inputs": rows, "targets": targets}, token=TOKEN
        )
        assert status == 200, reply
        assert reply["step"] == i + 1
    assert reply["loss_after"] < reply["loss_before"] or np.isclose(
        reply["loss_after"], reply["loss_before"]
    )
    _, after = server.request("POST", f"/models/{name}/predict", {"inputs": rows})
    assert after["outputs"] != before["outputs"]
    _, info = server.request("GET", f"/models/{name}")
    server.stop()
    server.start()
    _, info2 = server.request("GET", f"/models/{name}")
    assert info2["online_steps"] == 3 and info2["weights_sha256"] == info["weights_sha256"]
    _, again = server.request("POST", f"/models/{name}/predict", {"inputs": rows})
    assert again["outputs"] == after["outputs"]


def test_online_step_is_torchs_sgd_step(data):
    """One bpserve step on an imported module equals torch.optim.SGD's on the module
    (cross-entropy on its softmax output, same learning rate and momentum)."""
    x, y = data
    module = torch_module(5)
    model = from_torch(module, learning_rate=0.1, momentum=0.9)
    xb, yb = x[:32], y[:32]
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        out = module(torch.from_numpy(xb))
        torch.nn.functional.nll_loss(torch.log(out), torch.from_numpy(yb).long()).backward()
        opt.step()
    targets = np.eye(10, dtype=np.float32)[yb]
    for _ in range(2):
        model = apply_step(model, xb, targets, 0.1, 0.9).model
    again = from_torch(module)
    np.testing.assert_allclose(model.network.params, again.network.params, **TOL)


def test_api_from_sklearn_and_from_torch(data):
    x, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((10,), activation="logistic", max_iter=20, random_state=1).fit(x, y)
    model = from_sklearn(est)
    np.testing.assert_allclose(model.predict(x[:50]), est.predict_proba(x[:50]), **TOL)
    assert model.labels == [str(c) for c in est.classes_]
    assert model.network.loss.name == "cross_entropy"
    module = torch_module(2)
    model = from_torch(module, labels=list("abcdefghij"))
    want = module(torch.from_numpy(x[:50])).detach().numpy()
    np.testing.assert_allclose(model.predict(x[:50]), want, **TOL)
    assert model.optimizer_state["velocity"].shape == model.network.params.shape


def test_readme_bring_your_model_runs(tmp_path):
    """The README's example, as written: the Python block, then its two commands."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Bring your model", 1)[1].split("\n## ", 1)[0]
    python = section.split("```python\n", 1)[1].split("```", 1)[0]
    shell = section.split("```sh\n", 1)[1].split("```", 1)[0]
    run = subprocess.run(
        [sys.executable, "-c", python],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    for line in shell.strip().splitlines():
        cmd = line.split("#")[0].split()
        assert cmd[0] == ".venv/bin/bptrain"
        done = bptrain(*cmd[1:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    store = ModelStore(tmp_path / "models")
    assert store.names() == ["iris-onnx", "iris-torch"]
    a, _ = store.load("iris-torch")
    b, _ = store.load("iris-onnx")
    assert a.network.params.tobytes() == b.network.params.tobytes()
    assert b.labels == ["setosa", "versicolor", "virginica"] and b.optimizer.learning_rate == 0.01
