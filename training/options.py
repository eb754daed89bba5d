"""``bptrain``'s options, defined once: pydantic-settings models with a CLI and a TOML source.

Each option is one field of ``TrainConfig`` (or ``EvalConfig``, ``ExportConfig``,
``ImportConfig``): its type, bounds,
default and help text.  pydantic-settings' ``CliSettingsSource`` makes the flags from
the fields (``--batch-size`` for ``batch_size``; ``--nesterov`` alone for a boolean
that defaults to False), ``TomlConfigSettingsSource`` reads ``--config``, and both go
through the same validation, so an unknown key or a bad value names itself, wherever
it came from.  Flags win over the file, the file over the defaults.  The names an
option allows are the engine's and the readers' own tables (activations, losses,
initialisations, schedules, dtypes, data formats), so a new entry there is a new
choice here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    CliDualFlag,
    CliPositionalArg,
    CliSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from training.data import FORMATS
from training.engine.activations import HIDDEN_ACTIVATIONS
from training.engine.losses import LOSSES
from training.engine.network import DTYPES, INITS
from training.engine.trainer import SCHEDULES

Format = Literal[FORMATS]  # type: ignore[valid-type]
Activation = Literal[HIDDEN_ACTIVATIONS]  # type: ignore[valid-type]
LossName = Literal[tuple(LOSSES)]  # type: ignore[valid-type]
Init = Literal[INITS]  # type: ignore[valid-type]
ScheduleName = Literal[SCHEDULES]  # type: ignore[valid-type]
DType = Literal[tuple(DTYPES)]  # type: ignore[valid-type]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class UsageError(Exception):
    """Bad usage or configuration: exit code 2."""


class _Options(BaseSettings):
    """Values come only from what ``parse`` gives (flags and file); never the environment."""

    model_config = SettingsConfigDict(
        extra="forbid", cli_kebab_case=True, cli_implicit_flags="toggle", cli_hide_none_type=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class TrainConfig(_Options):
    data: str | None = Field(None, description="data file (not needed for --format digits)")
    format: Format | None = Field(None, description="inferred from the extension where possible")
    label_column: str | None = Field(None, description="CSV label column (null: the last)")
    missing: Literal["impute", "error"] = Field(
        "impute",
        description="empty/NA/NaN cells and text columns: impute and encode, or refuse",
    )
    categorical: list[str] = Field([], description="integer-coded category columns: a,b")
    name: str = Field("model", pattern=NAME, description="model name in the store")
    models_dir: str = Field("models", description="model store folder")
    database_url: str | None = Field(
        None, description="publish to this PostgreSQL (postgresql://...), the folder its cache"
    )
    hidden: list[int] = Field([64], description="hidden layer sizes, e.g. 64,32")
    activation: Activation = Field("relu", description="hidden activation")
    loss: LossName | None = Field(None, description="default: by the task")
    init: Init | None = Field(None, description="default: per activation")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(
        0.001, ge=0, description="L2 on the weights, not the biases (bench/quality_bench.py)"
    )
    clip_norm: float | None = Field(None, gt=0)
    schedule: ScheduleName = "constant"
    step_size: int = Field(10, ge=1, description="epochs per step of the step schedule")
    gamma: float = Field(0.5, gt=0, description="factor per step of the step schedule")
    decay: float = Field(0.01, ge=0, description="inverse_time decay per epoch")
    patience: int | None = Field(10, ge=1, description="early stopping patience in epochs")
    refit: CliDualFlag[bool] = Field(
        True,
        description="after early stopping, train again on the training and validation rows "
        "for the best epoch count (training/refit.py)",
    )
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = 0
    dtype: DType = "float32"
    init_from: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*:\d+$",
        description="NAME:VERSION: warm start from a stored version",
    )
    dry_run: bool = Field(False, description="train and report, publish nothing")
    quiet: bool = Field(False, description="plain one line per epoch")
    json_output: bool = Field(False, alias="json", description="print one JSON object at the end")

    @field_validator("categorical", mode="before")
    @classmethod
    def _categorical(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            v = ",".join(v)  # as the CLI gives them: one flag value may hold several names
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @field_validator("hidden", mode="before")
    @classmethod
    def _hidden(cls, v: Any) -> Any:
        if isinstance(v, list) and any(isinstance(s, str) for s in v):
            v = ",".join(map(str, v))  # what the CLI could not read: say so in the user's terms
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


class EvalConfig(_Options):
    name: str = Field(description="the stored model")
    version: int | None = Field(None, description="default: the latest")
    data: str | None = None
    format: Format | None = None
    label_column: str | None = None
    models_dir: str = "models"
    database_url: str | None = Field(None, description="read the version from this PostgreSQL")
    json_output: bool = Field(False, alias="json")
    outputs: bool = Field(False, description="with --json: each row's outputs, as /predict")


class ExportConfig(_Options):
    model: CliPositionalArg[str] = Field(description="NAME[:VERSION]; default version: the latest")
    onnx: str = Field(description="the .onnx file to write")
    models_dir: str = "models"
    no_preprocessing: bool = Field(
        False, description="leave the preprocessing out: the graph then takes preprocessed rows"
    )


class ImportConfig(_Options):
    path: CliPositionalArg[str] = Field(description="the .onnx file")
    name: str = Field(description="model name in the store")
    models_dir: str = "models"
    lr: float | None = Field(None, description="online learning rate (null: 0.05)")
    momentum: float | None = Field(None, description="online momentum (null: 0.9)")
    labels: str | None = Field(None, description="class names, comma-separated, in output order")
    loss: str | None = Field(None, description=", ".join(LOSSES))
    json_output: bool = Field(False, alias="json", description="print one JSON object")


TRAIN_HELP = dict(
    prog="bptrain",
    description="Train a model and publish it to the store.",
    epilog="Subcommands: bptrain evaluate --name N [--version V] --data PATH; "
    "bptrain export NAME[:VERSION] --onnx PATH; bptrain import PATH --name NAME",
)
EVAL_HELP = dict(prog="bptrain evaluate", description="Score a stored version on data.")
EXPORT_HELP = dict(prog="bptrain export", description="Write a version as ONNX.")
IMPORT_HELP = dict(prog="bptrain import", description="Publish an ONNX MLP as a new version.")


def _flags(cls: type[_Options], argv: list[str], **help: str) -> tuple[dict, argparse.Namespace]:
    """The flags given on the command line (argparse exits 2 on a malformed one)."""
    parser = argparse.ArgumentParser(**help)
    if cls is TrainConfig:
        parser.add_argument("--config", help="TOML file with any of the options (flags win)")
    source = CliSettingsSource(cls, root_parser=parser, cli_prog_name=help["prog"])
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k != "config"}
    return source(parsed_args=given)(), args


def _from_file(path: str) -> dict[str, Any]:
    """The options a TOML file sets; paths in it are relative to the file."""
    if not Path(path).is_file():
        raise UsageError(f"{path}: config file not found")
    try:
        values = TomlConfigSettingsSource(TrainConfig, toml_file=path)()
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise UsageError(f"{path}: bad TOML ({exc})") from None
    values = {k.replace("-", "_"): v for k, v in values.items()}
    if "data" in values and not Path(values["data"]).is_absolute():
        values["data"] = str((Path(path).parent / values["data"]).resolve())
    return values


def _validated(cls: type[_Options], values: dict[str, Any], where: str) -> Any:
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "config"
        raise UsageError(f"{where}: {loc}: {first['msg']}") from None


def train_config(argv: list[str]) -> TrainConfig:
    """``bptrain [train]``'s options: the file's (``--config``), then the flags'."""
    flags, args = _flags(TrainConfig, argv, **TRAIN_HELP)
    values = _from_file(args.config) if args.config else {}
    return _validated(TrainConfig, {**values, **flags}, args.config or "options")


def eval_config(argv: list[str]) -> EvalConfig:
    """``bptrain evaluate``'s options."""
    flags, _ = _flags(EvalConfig, argv, **EVAL_HELP)
    return _validated(EvalConfig, flags, "options")


def export_config(argv: list[str]) -> ExportConfig:
    """``bptrain export``'s options."""
    flags, _ = _flags(ExportConfig, argv, **EXPORT_HELP)
    return _validated(ExportConfig, flags, "options")


def import_config(argv: list[str]) -> ImportConfig:
    """``bptrain import``'s options."""
    flags, _ = _flags(ImportConfig, argv, **IMPORT_HELP)
    return _validated(ImportConfig, flags, "options")
