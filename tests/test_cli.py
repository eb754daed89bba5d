"""bptrain run as a subprocess, end to end, on small data."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.store import WEIGHTS, ModelStore

ROOT = Path(__file__).resolve().parent.parent


def bptrain(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "training", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def write_csv(path: Path, n=120, seed=0, header="x1,x2,x3,label"):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["cat", "dog", "eel"], n)
    centers = {"cat": (2, 0, 0), "dog": (0, 2, 0), "eel": (0, 0, 2)}
    rows = [header] + [
        ",".join(f"{v:.4f}" for v in np.add(centers[lab], rng.normal(0, 0.5, 3))) + f",{lab}"
        for lab in labels
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


FAST = ["--epochs", 15, "--hidden", "8", "--batch-size", 8, "--quiet"]


def test_end_to_end_trains_publishes_and_loads(tmp_path):
    data = write_csv(tmp_path / "animals.csv")
    out = bptrain(
        "--data", data, "--name", "animals", "--models-dir", tmp_path / "m", *FAST, "--json"
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["name"] == "animals" and result["version"] == 1
    assert result["metrics"]["test_accuracy"] > 0.9 and result["metrics"]["epochs_run"] >= 1
    assert "epoch 1 " in out.stderr  # plain progress lines when not on a terminal
    model, manifest = ModelStore(tmp_path / "m").load("animals", 1)
    assert model.labels == ["cat", "dog", "eel"] and manifest.inputs.feature_names == [
        "x1",
        "x2",
        "x3",
    ]
    assert manifest.training["hidden"] == [8] and manifest.data_fingerprint
    assert (Path(result["path"]) / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert manifest.metrics["test_accuracy"] == result["metrics"]["test_accuracy"]
    ev = bptrain(
        "evaluate", "--name", "animals", "--data", data, "--models-dir", tmp_path / "m", "--json"
    )
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["scores"]["accuracy"] > 0.9


def test_same_config_seed_and_data_give_the_same_weight_file(tmp_path):
    data = write_csv(tmp_path / "d.csv")
    digests = []
    for run in ("a", "b"):
        out = bptrain(
            "--data", data, "--name", "m", "--models-dir", tmp_path / run, *FAST, "--seed", 3
        )
        assert out.returncode == 0, out.stderr
        digests.append(
            hashlib.sha256((tmp_path / run / "m" / "1" / WEIGHTS).read_bytes()).hexdigest()
        )
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    "content,message",
    [
        ("a,b,label\n1,2,x\n1,2\n", "bad.csv:3: ragged row"),
        ("a,b,label\n1,2,x\n1,oops,y\n", "bad.csv:3: non-numeric value 'oops' in column 'b'"),
        ("a,b,label\n1,2,x\n1,2,\n", "bad.csv:3: missing label"),
        ("a,b,label\n1,2,x\n3,4,x\n", "only one class"),
        ("", "bad.csv: empty file"),
        ("a,b,label\n", "no examples"),
    ],
)
def test_bad_data_exits_3_naming_file_and_line(tmp_path, content, message):
    # --missing error: today's strict reading, where a text cell is bad data
    (tmp_path / "bad.csv").write_text(content)
    args = ("--data", tmp_path / "bad.csv", "--models-dir", tmp_path / "m", *FAST)
    out = bptrain(*args, "--missing", "error")
    assert out.returncode == 3, out.stderr
    assert message in out.stderr
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").rglob("manifest.json"))


def test_missing_file_and_code_recognizer_format(tmp_path):
    out = bptrain("--data", tmp_path / "nope.csv", "--models-dir", tmp_path / "m")
    assert out.returncode == 3 and "nope.csv: file not found" in out.stderr
    bad = tmp_path / "x.200"
    bad.write_bytes(b"0.1 0.2 > 1 0\r\r\n0.1 zz > 0 1\r\r\n")
    out = bptrain("--data", bad, "--models-dir", tmp_path / "m")
    assert out.returncode == 3 and "x.200:2: non-numeric value" in out.stderr


def test_bad_configuration_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('format = "digits"\nlearning_rate = 0.1\n')
    out = bptrain("--config", cfg)
    assert out.returncode == 2 and "learning_rate" in out.stderr
    out = bptrain("--format", "digits", "--momentum", "1.5")
    assert out.returncode == 2 and "momentum" in out.stderr
    out = bptrain("--format", "digits", "--hidden", "8,x")
    assert out.returncode == 2 and "hidden" in out.stderr
    out = bptrain("--epochs", "many")
    assert out.returncode == 2


def test_init_from_continues_from_stored_weights(tmp_path):
    data = write_csv(tmp_path / "d.csv")
    models = tmp_path / "m"
    assert bptrain("--data", data, "--name", "m", "--models-dir", models, *FAST).returncode == 0
    out = bptrain(
        "--data",
        data,
        "--name",
        "m",
        "--models-dir",
        models,
        *FAST,
        "--init-from",
        "m:1",
        "--epochs",
        1,
        "--lr",
        1e-9,
        "--momentum",
        0,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    store = ModelStore(models)
    first, _ = store.load("m", 1)
    second, manifest = store.load("m", 2)
    assert manifest.parent_version == 1
    # momentum 0 and a learning rate of 1e-9: the weights stay where version 1 left them
    assert np.allclose(first.network.params, second.network.params, atol=1e-6)
    assert json.loads(out.stdout)["metrics"]["test_accuracy"] > 0.9  # no relearning needed
    wide = tmp_path / "wide4.csv"
    wide.write_text(
        "a,b,c,d,label\n" + "\n".join(f"{i},{i},{i},{i},{'ab'[i % 2]}" for i in range(20))
    )
    out = bptrain("--data", wide, "--name", "m", "--models-dir", models, "--init-from", "m:1")
    assert out.returncode == 3 and "4 features, but m:1 takes 3" in out.stderr


def test_code_recognizer_config_beats_the_original_by_30_points(code_recognizer_path, tmp_path):
    out = bptrain(
        "--config", ROOT / "configs" / "code-recognizer.toml", "--models-dir", tmp_path, "--json"
    )
    assert out.returncode == 0, out.stderr
    accuracy = json.loads(out.stdout)["metrics"]["test_accuracy"]
    print(f"code-recognizer test accuracy {accuracy:.4f}")
    assert accuracy >= 0.652 + 0.30
