"""What ``bptrain`` does once its options are read: train and publish, or score.

``train`` reads the data, splits it (stratified, seeded), fits the preprocessing and the
target scaling on the training part only (training/pipeline.py), trains with the
divergence guard and early stopping, scores the test part in the targets' own units
and publishes the version.  ``evaluate`` scores a stored version on a file through the
same ``rows_of`` / ``Model.prepare`` path the service uses for a request's rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from training.console import Progress, plot_png
from training.data import DataError, Dataset, check_learnable, load, stratified_split
from training.engine.network import Network
from training.engine.optimizers import SGD
from training.engine.trainer import History, Schedule
from training.evaluation import score
from training.model import Model
from training.pipeline import guarded_fit, input_width, new_model, rows_of
from training.refit import Refitted, Start, applies, refit, refit_epochs, refit_metrics
from training.store import ModelStore

if TYPE_CHECKING:
    from training.options import EvalConfig, TrainConfig


def open_store(root: str, database_url: str | None) -> ModelStore:
    """The folder store, or PostgreSQL's with the folder as its cache (psycopg is
    imported only then)."""
    if not database_url:
        return ModelStore(root)
    from training.pg_store import open_store as open_pg

    return open_pg(root, database_url)


def _base(cfg: TrainConfig, store: ModelStore, ds: Dataset, source: str) -> Model | None:
    """The stored version ``--init-from`` names, checked against the data."""
    if not cfg.init_from:
        return None
    base_name, base_version = cfg.init_from.split(":")
    base, _ = store.load(base_name, int(base_version))
    if base.n_features != ds.x.shape[1]:
        raise DataError(
            source, f"{ds.x.shape[1]} features, but {cfg.init_from} takes {base.n_features}"
        )
    if base.labels != ds.classes:
        raise DataError(source, f"classes {ds.classes} differ from {cfg.init_from}'s {base.labels}")
    return base


def _new(
    cfg: TrainConfig, ds: Dataset, train_idx: np.ndarray, opt: SGD, source: str
) -> tuple[Model, list[str]]:
    loss = cfg.loss or ("cross_entropy" if ds.is_classification else "quadratic")
    output = None if ds.is_classification else "identity"
    n_out = len(ds.classes) if ds.classes else ds.y.shape[1]
    net = Network(
        [input_width(ds, train_idx, cfg.categorical), *cfg.hidden, n_out],
        cfg.activation,
        output,
        loss,
        init=cfg.init,
        dtype=cfg.dtype,
        seed=cfg.seed,
    )
    model, warnings = new_model(ds, train_idx, net, opt, cfg.categorical, source)
    for w in warnings:
        print(f"bptrain: warning: {w}; dropped", file=sys.stderr, flush=True)
    return model, warnings


def _refit(
    cfg: TrainConfig,
    model: Model,
    start: Start,
    part: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    history: History,
    split: tuple[np.ndarray, np.ndarray],
    fit_kw: dict[str, Any],
) -> Refitted | None:
    """The refit on the training and validation rows (training/refit.py), when early
    stopping chose the epoch count; None when it did not, or ``--no-refit``."""
    train_idx, val_idx = split
    if not applies(cfg.refit, history, cfg.patience, len(val_idx)):
        return None
    both = np.concatenate([train_idx, val_idx])
    epochs = refit_epochs(history.best_epoch, len(train_idx), len(both), cfg.batch_size)
    progress = Progress(epochs, plain=cfg.quiet or not sys.stderr.isatty(), label="refit")
    try:
        return refit(model, start, *part(both), epochs, callback=progress, **fit_kw)
    finally:
        progress.close()


def train(cfg: TrainConfig) -> dict[str, Any]:
    source = cfg.data or "-"
    ds = load(cfg.data, cfg.format, cfg.label_column, cfg.missing)
    check_learnable(ds, source)
    store = open_store(cfg.models_dir, cfg.database_url)
    base = _base(cfg, store, ds, source)
    train_idx, val_idx, test_idx = stratified_split(
        ds, cfg.val_fraction, cfg.test_fraction, cfg.seed
    )
    if len(train_idx) == 0:
        raise DataError(source, "no examples left for training after the split")
    opt = SGD(cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.clip_norm)
    warnings: list[str] = []
    if base is not None:
        model = base.copy()
        model.optimizer = opt
    else:
        model, warnings = _new(cfg, ds, train_idx, opt, source)
    net = model.network
    rows = model.check_rows(rows_of(model, ds, source))

    def part(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = model.scale_targets(ds.subset(idx).target_matrix(net.dtype))
        return model.transform(rows[idx]), y

    validation = part(val_idx) if len(val_idx) else None
    start = Start.of(model, model.optimizer_state if base is not None else None)
    fit_kw = dict(
        batch_size=cfg.batch_size,
        schedule=Schedule(cfg.schedule, cfg.step_size, cfg.gamma, cfg.decay),
        seed=cfg.seed,
    )
    progress = Progress(cfg.epochs, plain=cfg.quiet or not sys.stderr.isatty())
    try:
        guarded = guarded_fit(
            model,
            opt,
            *part(train_idx),
            state=start.state,
            callback=progress,
            epochs=cfg.epochs,
            validation=validation,
            patience=cfg.patience,
            **fit_kw,
        )
    finally:
        progress.close()
    again = _refit(cfg, model, start, part, guarded.history, (train_idx, val_idx), fit_kw)
    last = again.guarded if again else guarded
    history = guarded.history
    model.optimizer_state = last.state
    held_out = test_idx if len(test_idx) else (val_idx if len(val_idx) else train_idx)
    scores = score(model, ds.subset(held_out))
    # The figures of the weights being published: the best epoch's when early stopping
    # restored them (fit does that whenever patience is set), else the last epoch's.
    restored = cfg.patience is not None and history.best_epoch
    final = history.epochs[history.best_epoch - 1] if restored else history.epochs[-1]
    metrics = {
        "train_loss": final["train_loss"],
        "train_accuracy": final["train_accuracy"],
        "val_loss": final.get("val_loss"),
        "val_accuracy": final.get("val_accuracy"),
        "test_loss": scores["loss"],
        "test_accuracy": scores.get("accuracy"),
        **{f"test_{k}": scores[k] for k in ("r2", "mae", "rmse") if k in scores},
        "epochs_run": len(history.epochs),
        "best_epoch": history.best_epoch,
        "restarts": guarded.restarts + (last.restarts if again else 0),
        "learning_rate": last.learning_rate,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        **refit_metrics(again),
    }
    notes = guarded.notes + (last.notes if again else [])
    result: dict[str, Any] = {
        "name": cfg.name,
        "version": None,
        "path": None,
        "metrics": metrics,
        "scores": scores,
    }
    if warnings or notes:
        result["warnings"] = warnings + notes
    if cfg.dry_run:
        return result
    png = plot_png(history.epochs)
    if png is None:
        result["note"] = (
            "matplotlib not installed: no training-curve PNG (pip install 'bpserve[plot]')"
        )
    exclude = {"dry_run", "quiet", "json_output", "models_dir", "database_url"}  # a password
    training = cfg.model_dump(exclude=exclude)
    if notes:
        training["divergence_restarts"] = notes
    parent = (
        int(cfg.init_from.split(":")[1])
        if cfg.init_from and cfg.init_from.startswith(cfg.name + ":")
        else None
    )
    version = store.save(
        cfg.name,
        model,
        parent_version=parent,
        training=training,
        data_fingerprint=ds.fingerprint,
        metrics=metrics,
        extra_files={"curves.png": png} if png else None,
    )
    result["version"] = version
    result["path"] = str(store.version_dir(cfg.name, version))
    return result


def _as_model_targets(ds: Dataset, model: Model, source: str) -> Dataset:
    """The file's targets in the model's terms: numbers for a regression model, the
    model's class indices for a classifier (a file may hold a subset, in any order)."""
    if ds.classes is not None and model.labels is None and all(c.isdigit() for c in ds.classes):
        # Integer targets for a regression model: numbers, not class names.
        y = np.array([[float(ds.classes[i])] for i in ds.y])
        return Dataset(ds.x, y, None, ds.feature_names, ds.fingerprint, ds.text)
    if ds.classes is None or ds.classes == model.labels:
        return ds
    index = {c: i for i, c in enumerate(model.labels or [])}
    missing = [c for c in ds.classes if c not in index]
    if missing:
        raise DataError(source, f"labels {missing} are not classes of the model")
    y = np.array([index[ds.classes[i]] for i in ds.y])
    labels = list(model.labels or [])
    return Dataset(ds.x, y, labels, ds.feature_names, ds.fingerprint, ds.text)


def evaluate(args: EvalConfig) -> dict[str, Any]:
    source = args.data or "-"
    store = open_store(args.models_dir, args.database_url)
    model, manifest = store.load(args.name, args.version)
    strict = not model.preprocessing.allows_missing
    ds = load(args.data, args.format, args.label_column, "error" if strict else "impute")
    ds = _as_model_targets(ds, model, source)
    out: dict[str, Any] = {"name": args.name, "version": manifest.version}
    out["scores"] = score(model, ds)
    if args.outputs:
        # Each row's outputs, in the targets' own units, as /predict answers them.
        out["outputs"] = model.predict(rows_of(model, ds, source)).tolist()
    return out
