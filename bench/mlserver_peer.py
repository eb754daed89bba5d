"""MLServer as bench/peer_bench.py's peer: its own pinned virtual environment, the
scikit-learn model it serves, and one server started on free loopback ports."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import free_port  # noqa: E402

PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
VENV = Path(tempfile.gettempdir()) / "bpserve-peer-mlserver-1.7.1"
TRAIN = textwrap.dedent(
    """
    import sys, joblib, warnings
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    warnings.simplefilter("ignore")
    x, y = load_digits(return_X_y=True)
    m = MLPClassifier(hidden_layer_sizes=(256,), activation="relu", max_iter=20,
                      random_state=0).fit(x, y)
    print([w.shape for w in m.coefs_], round(m.score(x, y), 3))
    joblib.dump(m, sys.argv[1])
    """
)


def mlserver_venv() -> Path:
    """MLServer's own virtual environment, created and pinned on first use."""
    stamp = VENV / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *PINS], check=True)
        stamp.write_text("\n".join(PINS) + "\n")
    return VENV


def train_model(venv: Path, path: Path) -> str:
    """The scikit-learn MLP MLServer serves, trained by MLServer's python into ``path``
    (joblib); what it printed: the weights' shapes and the training accuracy."""
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", TRAIN, str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def versions(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout
    want = ("mlserver", "mlserver-sklearn", "scikit-learn", "uvloop", "uvicorn", "fastapi")
    return {
        k: v
        for k, v in (line.split("==", 1) for line in out.splitlines() if "==" in line)
        if k.lower() in want
    }


def mlserver(venv: Path, folder: Path, parallel: int | None) -> tuple[subprocess.Popen, int, int]:
    """One MLServer on free loopback ports (REST, gRPC), serving the joblib model in ``folder``."""
    port, grpc_port = free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
        "debug": False,
    }
    if parallel is not None:
        settings["parallel_workers"] = parallel
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "digits",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    log = open(folder / "mlserver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(venv / "bin" / "mlserver"), "start", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mlserver exited:\n{(folder / 'mlserver.log').read_text()[-3000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/v2/models/digits/ready")
            if c.getresponse().status == 200:
                return proc, port, grpc_port
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"mlserver not ready:\n{(folder / 'mlserver.log').read_text()[-3000:]}")
