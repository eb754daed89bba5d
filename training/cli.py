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
import json
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from training.data import FORMATS, DataError
from training.errors import StorageUnavailable
from training.evaluation import format_report
from training.retrain import evaluate, train
from training.store import StoreError

EXIT_OK, EXIT_USAGE, EXIT_DATA = 0, 2, 3


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str | None = None
    format: Literal["csv", "npz", "code-recognizer", "digits"] | None = None
    label_column: str | None = None
    missing: Literal["impute", "error"] = "impute"
    categorical: list[str] = []
    name: str = Field(default="model", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    models_dir: str = "models"
    database_url: str | None = None  # publish to PostgreSQL (training/pg_store.py)
    hidden: list[int] = [64]
    activation: Literal["sigmoid", "tanh", "relu", "identity"] = "relu"
    loss: Literal["quadratic", "cross_entropy", "binary_cross_entropy"] | None = None
    init: Literal["gaussian", "xavier", "he"] | None = None
    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=0.01, gt=0)
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

    @field_validator("categorical", mode="before")
    @classmethod
    def _categorical(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v

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
    p.add_argument(
        "--missing",
        choices=("impute", "error"),
        help="empty/NA/NaN cells and text columns: impute and encode (default), or refuse",
    )
    p.add_argument("--categorical", metavar="COLS", help="integer-coded category columns: a,b")
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
    p.add_argument("--database-url", help="read the version from this PostgreSQL")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--outputs", action="store_true", help="with --json: each row's outputs, as /predict"
    )
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
    except (UsageError, DataError, StoreError, StorageUnavailable, FloatingPointError) as exc:
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
