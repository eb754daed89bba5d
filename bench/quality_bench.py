"""Model quality of bptrain's defaults against scikit-learn's default pipeline.

For every table and seed both sides get the same split (bptrain's stratified split of
that seed: bptrain early-stops on the validation part, then refits on both parts for
the best epoch count; scikit-learn trains on both), and are scored on the same test
rows.  bptrain runs as a user's ``bptrain --data table.csv`` does (the CSV written here,
nothing tuned);
scikit-learn as ``make_pipeline(ColumnTransformer(impute + StandardScaler | impute +
OneHotEncoder), MLPClassifier() / MLPRegressor())`` with every default.

    flock /tmp/bench.lock .venv/bin/python bench/quality_bench.py [--seeds 5] [--tables a,b]
        [--scaling auto|standard] [--refit-length epochs|steps] [--set key=value ...]

Prints one line per table: accuracy (or R^2 x 100) mean and sd over the seeds, training
wall time per fit (median), restarts of bptrain's divergence guard, and the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import columns, refit
from training.cli import TrainConfig, train
from training.data import load, stratified_split


# -- the tables -------------------------------------------------------------------------------
def _bundled(name: str):
    from sklearn import datasets

    d = getattr(datasets, f"load_{name}")()
    names = [str(n).replace(" ", "_").replace(",", "") for n in d.feature_names]
    return names, d.data.tolist(), d.target.tolist(), name == "diabetes"


def sparse_pixels(seed: int = 0):
    """20x20 non-negative "pixels", mostly 0: each class lights a few of its own pixels
    (each with probability 0.3), classes share half their pixels, and noise pixels light
    anywhere (probability 0.03), so some columns are non-zero in a handful of rows."""
    rng = np.random.default_rng(seed)
    n, d, k = 2000, 400, 10
    shared = rng.choice(d, 20, replace=False)
    protos = [np.union1d(shared, rng.choice(d, 20, replace=False)) for _ in range(k)]
    y = rng.integers(0, k, n)
    x = np.zeros((n, d))
    for i, c in enumerate(y):
        on = protos[c][rng.random(protos[c].size) < 0.3]
        x[i, on] = rng.integers(1, 256, on.size)
    noise = rng.random((n, d)) < 0.03
    x[noise] = rng.integers(1, 256, noise.sum())
    return [f"p{j}" for j in range(d)], x.tolist(), y.tolist(), False


def thousands(seed: int = 1):
    """Regression whose target is in the thousands, from features of mixed scales."""
    rng = np.random.default_rng(seed)
    n = 1500
    area = rng.uniform(30, 300, n)
    rooms = rng.integers(1, 9, n).astype(float)
    age = rng.uniform(0, 100, n)
    dist = rng.lognormal(1.5, 0.8, n)
    lon = rng.uniform(-3, 3, n)
    temp = rng.normal(-5, 10, n)
    y = (
        3000
        + 12 * area
        + 150 * rooms
        - 10 * age
        + 2500 * np.exp(-dist / 5)
        + 400 * np.sin(lon)
        + 0.02 * area * age
        + rng.normal(0, 150, n)
    )
    x = np.column_stack([area, rooms, age, dist, lon, temp])
    return ["area", "rooms", "age", "distance", "lon", "temp"], x.tolist(), y.tolist(), True


def text_holes(seed: int = 2):
    """Two text columns, three numeric ones, three classes; 10 % of feature cells empty."""
    rng = np.random.default_rng(seed)
    n = 1500
    colors = ["black", "white", "red", "green", "blue"]
    cities = ["oslo", "lima", "pune", "kiev", "rome", "baku", "nice", "doha"]
    ce = dict(zip(colors, rng.normal(0, 1, len(colors))))
    te = dict(zip(cities, rng.normal(0, 1, len(cities))))
    color = rng.choice(colors, n)
    city = rng.choice(cities, n)
    size = rng.normal(10, 3, n)
    weight = rng.gamma(2, 20, n)
    count = rng.integers(0, 20, n).astype(float)
    s = (
        np.array([ce[c] for c in color])
        + np.array([te[c] for c in city])
        + 0.3 * (size - 10)
        - 0.02 * (weight - 40)
        + rng.normal(0, 0.4, n)
    )
    y = np.digitize(s, np.quantile(s, [1 / 3, 2 / 3]))
    rows = [
        [c, t, f"{a:.3f}", f"{w:.2f}", f"{k:.0f}"]
        for c, t, a, w, k in zip(color, city, size, weight, count)
    ]
    for i, j in zip(*np.nonzero(rng.random((n, 5)) < 0.10)):
        rows[i][j] = ""
    return ["color", "city", "size", "weight", "count"], rows, [f"c{v}" for v in y], False


TABLES = {
    "iris": lambda: _bundled("iris"),
    "wine": lambda: _bundled("wine"),
    "breast_cancer": lambda: _bundled("breast_cancer"),
    "digits": lambda: _bundled("digits"),
    "diabetes": lambda: _bundled("diabetes"),
    "sparse_pixels": sparse_pixels,
    "thousands": thousands,
    "text_holes": text_holes,
}


def write_csv(path: Path, names, rows, targets, regression: bool) -> None:
    lines = [",".join([*names, "target"])]
    for r, t in zip(rows, targets):
        label = f"{float(t)!r}" if regression else str(t)
        lines.append(
            ",".join(str(v) if isinstance(v, str) else repr(float(v)) for v in r) + "," + label
        )
    path.write_text("\n".join(lines) + "\n")


# -- the two sides ------------------------------------------------------------------------------
def run_bptrain(path: Path, seed: int, overrides: dict) -> tuple[float, float, int, bool, int]:
    """Score, fit seconds, divergence-guard restarts, whether it diverged, best epoch."""
    cfg = TrainConfig.model_validate(
        {"data": str(path), "seed": seed, "dry_run": True, "quiet": True, **overrides}
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            result = train(cfg)
        except FloatingPointError:
            return float("nan"), time.perf_counter() - t0, -1, True, 0
    seconds = time.perf_counter() - t0
    m = result["metrics"]
    value = m["test_r2"] if "test_r2" in m else m["test_accuracy"]
    return 100 * value, seconds, m["restarts"], False, m["best_epoch"]


def run_sklearn(
    path: Path, seed: int, regression: bool, scale_y: bool = False
) -> tuple[float, float, int]:
    """Score, fit seconds and test rows of scikit-learn's default pipeline; with
    ``scale_y`` the regressor inside a ``TransformedTargetRegressor(StandardScaler)``
    (not the default: a reference for what scaled targets give scikit-learn too)."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    ds = load(path)
    train_idx, val_idx, test_idx = stratified_split(ds, 0.1, 0.2, seed)
    fit_idx = np.concatenate([train_idx, val_idx])
    table = ds.x.astype(object)
    for j, cells in ds.text.items():
        table[:, j] = np.where(cells == None, np.nan, cells)  # noqa: E711
    num = [j for j in range(ds.x.shape[1]) if j not in ds.text]
    txt = sorted(ds.text)
    parts = [("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num)]
    if txt:
        cat = make_pipeline(
            SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
        )
        parts.append(("cat", cat, txt))
    est = MLPRegressor(random_state=seed) if regression else MLPClassifier(random_state=seed)
    if scale_y:
        est = TransformedTargetRegressor(est, transformer=StandardScaler())
    pipe = make_pipeline(ColumnTransformer(parts), est)
    y = ds.y[:, 0] if regression else ds.y
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: the default
        pipe.fit(table[fit_idx], y[fit_idx])
    seconds = time.perf_counter() - t0
    pred = pipe.predict(table[test_idx])
    value = r2_score(y[test_idx], pred) if regression else accuracy_score(y[test_idx], pred)
    return 100 * value, seconds, len(test_idx)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tables", default=",".join(TABLES))
    p.add_argument(
        "--scaling", choices=("auto", "standard", "floor", "minmax"), default=columns.SCALING
    )
    p.add_argument("--floor", type=float, default=columns.FLOOR)
    p.add_argument("--refit-length", choices=refit.LENGTHS, default=refit.LENGTH)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    columns.SCALING, columns.FLOOR, refit.LENGTH = args.scaling, args.floor, args.refit_length
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    print(
        f"scaling {args.scaling} (floor range/{args.floor}); refit length {refit.LENGTH}; "
        f"overrides {overrides or 'none'}; seeds 0-{args.seeds - 1}"
    )
    print(
        f"{'table':<14} {'bptrain':>13} {'s/fit':>6} {'restarts':>8} "
        f"{'sklearn':>13} {'s/fit':>6} {'diff':>6} {'1 row':>5}  sklearn, targets scaled"
    )
    out = {}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, user_api="blas"):
        for name in args.tables.split(","):
            names, rows, targets, regression = TABLES[name]()
            path = Path(tmp) / f"{name}.csv"
            write_csv(path, names, rows, targets, regression)
            bp, bt, restarts, diverged, sk, st, sky, n_test = [], [], 0, 0, [], [], [], 0
            bests: list[int] = []
            for seed in range(args.seeds):
                v, t, r, d, best = run_bptrain(path, seed, overrides)
                bests.append(best)
                bp.append(v)
                bt.append(t)
                restarts += max(r, 0)
                diverged += d
                if not args.no_sklearn:
                    v, t, n_test = run_sklearn(path, seed, regression)
                    sk.append(v)
                    st.append(t)
                    if regression:
                        sky.append(run_sklearn(path, seed, regression, scale_y=True)[0])
            row = {
                "metric": "R2x100" if regression else "accuracy %",
                "bptrain_mean": statistics.fmean(bp),
                "bptrain_sd": statistics.stdev(bp) if len(bp) > 1 else 0.0,
                "bptrain_seconds": statistics.median(bt),
                "restarts": restarts,
                "diverged": diverged,
                "best_epochs": bests,
            }
            line = (
                f"{name:<14} {row['bptrain_mean']:6.2f} ±{row['bptrain_sd']:5.2f} "
                f"{row['bptrain_seconds']:6.2f} {restarts:>8}"
            )
            if sk:
                row.update(
                    sklearn_mean=statistics.fmean(sk),
                    sklearn_sd=statistics.stdev(sk) if len(sk) > 1 else 0.0,
                    sklearn_seconds=statistics.median(st),
                )
                # One test row in one of the seeds moves a mean accuracy by this much.
                row["one_row"] = 100 / n_test / len(sk)
                line += (
                    f" {row['sklearn_mean']:6.2f} ±{row['sklearn_sd']:5.2f} "
                    f"{row['sklearn_seconds']:6.2f} "
                    f"{row['bptrain_mean'] - row['sklearn_mean']:+6.2f}"
                    f" {'' if regression else format(row['one_row'], '5.2f'):>5}"
                )
            if sky:
                row["sklearn_scaled_y_mean"] = statistics.fmean(sky)
                row["sklearn_scaled_y_sd"] = statistics.stdev(sky) if len(sky) > 1 else 0.0
                line += f"  {row['sklearn_scaled_y_mean']:6.2f} ±{row['sklearn_scaled_y_sd']:5.2f}"
            if diverged:
                line += f"  DIVERGED {diverged}x"
            line += f"  best epochs {bests}"
            print(line, flush=True)
            out[name] = row
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
