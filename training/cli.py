"""``bptrain``: retrain a model from data and publish it as a new version in the store.

    bptrain --config configs/digits.toml
    bptrain --data data.csv --name mymodel --hidden 64,32 --epochs 30
    bptrain evaluate --name digits --data digits

Configuration comes from a TOML file and/or flags, flags winning, validated by a
pydantic model so an unknown key or a bad value names itself.  Exit codes: 0 done,
2 bad usage or configuration, 3 bad data.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from training.data import FORMATS, DataError, Dataset, Standardizer, load, stratified_split
from training.evaluation import format_report, score
from training.journal_errors import StorageUnavailable
from training.model import Model
from training.network import Network
from training.optimizers import SGD
from training.pg_store import open_store
from training.store import StoreError
from training.trainer import Schedule, fit

EXIT_OK, EXIT_USAGE, EXIT_DATA = 0, 2, 3


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str | None = None
    format: Literal["csv", "npz", "code-recognizer", "digits"] | None = None
    label_column: str | None = None
    name: str = Field(default="model", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    models_dir: str = "models"
    database_url: str | None = None  # publish to PostgreSQL (training/pg_store.py)
    hidden: list[int] = [64]
    activation: Literal["sigmoid", "tanh", "relu", "identity"] = "relu"
    loss: Literal["quadratic", "cross_entropy", "binary_cross_entropy"] | None = None
    init: Literal["gaussian", "xavier", "he"] | None = None
    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    clip_norm: float | None = Field(default=None, gt=0)
    schedule: Literal["constant", "step", "inverse_time"] = "constant"
    step_size: int = Field(default=10, ge=1)
    gamma: float = Field(default=0.5, gt=0)
    decay: float = Field(default=0.01, ge=0)
    patience: int | None = Field(default=10, ge=1)
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    test_fraction: float = Field(default=0.2, ge=0, lt=1)
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    init_from: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*:\d+$")
    dry_run: bool = False
    quiet: bool = False
    json_output: bool = Field(default=False, alias="json")

    @field_validator("hidden", mode="before")
    @classmethod
    def _hidden(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return [int(s) for s in v.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"hidden must be comma-separated integers, got {v!r}") from None
        return v

    @field_validator("hidden")
    @classmethod
    def _hidden_positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"every hidden layer needs at least 1 unit, got {v}")
        return v


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bptrain",
        description="Train a model and publish it to the store.",
        epilog="Subcommands: bptrain evaluate --name N [--version V] --data PATH; "
        "bptrain export NAME[:VERSION] --onnx PATH; bptrain import PATH --name NAME",
    )
    p.add_argument("--config", help="TOML file with any of the options below (flags win)")
    p.add_argument("--data", help="data file (not needed for --format digits)")
    p.add_argument("--format", choices=FORMATS, help="inferred from the extension where possible")
    p.add_argument("--label-column", help="CSV label column (default: the last)")
    p.add_argument("--name", help="model name in the store")
    p.add_argument("--models-dir", help="model store folder (default: models)")
    p.add_argument("--database-url", help="publish to this PostgreSQL (postgresql://...)")
    p.add_argument("--hidden", help="hidden layer sizes, e.g. 64,32")
    p.add_argument("--activation", help="hidden activation: sigmoid, tanh, relu, identity")
    p.add_argument("--loss", help="quadratic, cross_entropy or binary_cross_entropy")
    p.add_argument("--init", help="gaussian, xavier or he (default: per activation)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action="store_true", default=None)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--clip-norm", type=float)
    p.add_argument("--schedule", help="constant, step or inverse_time")
    p.add_argument("--step-size", type=int, help="epochs per step of the step schedule")
    p.add_argument("--gamma", type=float, help="factor per step of the step schedule")
    p.add_argument("--decay", type=float, help="inverse_time decay per epoch")
    p.add_argument("--patience", type=int, help="early stopping patience in epochs")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--test-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--dtype", help="float32 or float64")
    p.add_argument("--init-from", metavar="NAME:VERSION", help="warm start from a stored version")
    p.add_argument(
        "--dry-run", action="store_true", default=None, help="train and report, publish nothing"
    )
    p.add_argument("--quiet", action="store_true", default=None, help="plain one line per epoch")
    p.add_argument(
        "--json", action="store_true", default=None, help="print one JSON object at the end"
    )
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bptrain evaluate", description="Score a stored version on data."
    )
    p.add_argument("--name", required=True)
    p.add_argument("--version", type=int, help="default: the latest")
    p.add_argument("--data")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--label-column")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--database-url")
    p.add_argument("--json", action="store_true")
    return p


class UsageError(Exception):
    pass


# What each failure is called on stderr and which exit code it gets.
FAILURES: dict[type[Exception], tuple[int, str]] = {
    UsageError: (EXIT_USAGE, "error: "),
    DataError: (EXIT_DATA, "bad data: "),
    StoreError: (EXIT_USAGE, "model store: "),
    StorageUnavailable: (EXIT_USAGE, "database: "),
    FloatingPointError: (EXIT_DATA, ""),
}


def build_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        try:
            values = tomllib.loads(Path(args.config).read_text())
        except FileNotFoundError:
            raise UsageError(f"{args.config}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{args.config}: bad TOML ({exc})") from None
        values = {k.replace("-", "_"): v for k, v in values.items()}
        if "data" in values and not Path(values["data"]).is_absolute():
            # Paths in a config file are relative to the file, so it works from anywhere.
            values["data"] = str((Path(args.config).parent / values["data"]).resolve())
    for key, value in vars(args).items():
        if key != "config" and value is not None:
            values[key] = value
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise UsageError(f"{args.config or 'options'}: {where}: {first['msg']}") from None


class Progress:
    """A tqdm bar on a terminal; otherwise (or with --quiet) one plain line per epoch."""

    def __init__(self, epochs: int, plain: bool) -> None:
        self.bar = None
        if not plain:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, record: dict) -> None:
        fields = {"loss": f"{record['train_loss']:.4f}"}
        if record.get("val_loss") is not None:
            fields["val_loss"] = f"{record['val_loss']:.4f}"
        if record.get("val_accuracy") is not None:
            fields["val_acc"] = f"{record['val_accuracy'] * 100:.2f}%"
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
            self.bar.update(1)
        else:
            print(
                f"epoch {record['epoch']} " + " ".join(f"{k} {v}" for k, v in fields.items()),
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_png(history: list[dict]) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    if history[0].get("val_loss") is not None:
        ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    if history[0].get("train_accuracy") is not None:
        ax2.plot(epochs, [r["train_accuracy"] for r in history], label="train")
        if history[0].get("val_accuracy") is not None:
            ax2.plot(epochs, [r["val_accuracy"] for r in history], label="validation")
        ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def train(cfg: TrainConfig) -> dict[str, Any]:
    ds = load(cfg.data, cfg.format, cfg.label_column)
    store = open_store(cfg.models_dir, cfg.database_url)
    base: Model | None = None
    if cfg.init_from:
        base_name, base_version = cfg.init_from.split(":")
        base, _ = store.load(base_name, int(base_version))
        if base.n_features != ds.x.shape[1]:
            raise DataError(
                cfg.data or "-",
                f"{ds.x.shape[1]} features, but {cfg.init_from} takes {base.n_features}",
            )
        if base.labels != ds.classes:
            raise DataError(
                cfg.data or "-", f"classes {ds.classes} differ from {cfg.init_from}'s {base.labels}"
            )
    train_idx, val_idx, test_idx = stratified_split(
        ds, cfg.val_fraction, cfg.test_fraction, cfg.seed
    )
    if len(train_idx) == 0:
        raise DataError(cfg.data or "-", "no examples left for training after the split")
    opt = SGD(cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.clip_norm)
    if base is not None:
        model = base.copy()
        model.optimizer = opt
    else:
        loss = cfg.loss or ("cross_entropy" if ds.is_classification else "quadratic")
        output = None if ds.is_classification else "identity"
        n_out = len(ds.classes) if ds.classes else ds.y.shape[1]
        net = Network(
            [ds.x.shape[1], *cfg.hidden, n_out],
            cfg.activation,
            output,
            loss,
            init=cfg.init,
            dtype=cfg.dtype,
            seed=cfg.seed,
        )
        model = Model(net, Standardizer.fit(ds.x[train_idx]), ds.classes, ds.feature_names, opt)
    net = model.network

    def part(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sub = ds.subset(idx)
        return model.prepare(sub.x), sub.target_matrix(net.dtype)

    validation = part(val_idx) if len(val_idx) else None
    progress = Progress(cfg.epochs, plain=cfg.quiet or not sys.stderr.isatty())
    try:
        history, state = fit(
            net,
            opt,
            *part(train_idx),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            state=model.optimizer_state if base is not None else None,
            validation=validation,
            schedule=Schedule(cfg.schedule, cfg.step_size, cfg.gamma, cfg.decay),
            patience=cfg.patience,
            seed=cfg.seed,
            callback=progress,
        )
    finally:
        progress.close()
    model.optimizer_state = state
    test_part = (
        ds.subset(test_idx) if len(test_idx) else ds.subset(val_idx if len(val_idx) else train_idx)
    )
    scores = score(model, test_part)
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
        "epochs_run": len(history.epochs),
        "best_epoch": history.best_epoch,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
    }
    result: dict[str, Any] = {
        "name": cfg.name,
        "version": None,
        "path": None,
        "metrics": metrics,
        "scores": scores,
    }
    png = plot_png(history.epochs)
    if png is None:
        result["note"] = (
            "matplotlib not installed: no training-curve PNG (pip install 'bpserve[plot]')"
        )
    if not cfg.dry_run:
        training = cfg.model_dump(
            exclude={"dry_run", "quiet", "json_output", "models_dir", "database_url"}
        )
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


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args.models_dir, args.database_url)
    model, manifest = store.load(args.name, args.version)
    ds = load(args.data, args.format, args.label_column)
    if ds.x.shape[1] != model.n_features:
        raise DataError(
            args.data or "-", f"{ds.x.shape[1]} features, but the model takes {model.n_features}"
        )
    if ds.classes is not None and ds.classes != model.labels:
        # Map the file's class names onto the model's; unknown ones are bad data.
        index = {c: i for i, c in enumerate(model.labels or [])}
        missing = [c for c in ds.classes if c not in index]
        if missing:
            raise DataError(args.data or "-", f"labels {missing} are not classes of the model")
        ds = Dataset(
            ds.x,
            np.array([index[ds.classes[i]] for i in ds.y]),
            list(model.labels or []),
            ds.feature_names,
            ds.fingerprint,
        )
    return {"name": args.name, "version": manifest.version, "scores": score(model, ds)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["export"], ["import"]):  # ONNX in and out: training/interop/cli.py
        from training.interop.cli import main as interop_main

        return interop_main(argv)
    try:
        if argv[:1] == ["evaluate"]:
            args = _eval_parser().parse_args(argv[1:])
            out = evaluate(args)
            if args.json:
                print(json.dumps(out))
            else:
                print(f"{out['name']} version {out['version']}")
                print(format_report(out["scores"]))
            return EXIT_OK
        if argv[:1] == ["train"]:
            argv = argv[1:]
        cfg = build_config(_train_parser().parse_args(argv))
        result = train(cfg)
    except (UsageError, DataError, StoreError, FloatingPointError) as exc:
        code, prefix = next(v for t, v in FAILURES.items() if isinstance(exc, t))
        print(f"bptrain: {prefix}{exc}", file=sys.stderr)
        return code
    if cfg.json_output:
        print(json.dumps(result))
    else:
        where = (
            f"published {result['name']} version {result['version']} at {result['path']}"
            if result["version"]
            else "dry run: nothing published"
        )
        print(format_report(result["scores"]))
        print(where)
        if "note" in result:
            print(result["note"])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
