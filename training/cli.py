"""``bptrain``: retrain a model from data and publish it as a new version in the store.

    bptrain --config configs/digits.toml
    bptrain --data data.csv --name mymodel --hidden 64,32 --epochs 30
    bptrain evaluate --name digits --data digits

Configuration comes from a TOML file and/or flags, flags winning, validated by one
pydantic-settings model per command (training/options.py), so an unknown key or a bad
value names itself.  Exit codes: 0 done, 2 bad usage or configuration, 3 bad data.
"""

from __future__ import annotations

import json
import sys

from training.data import DataError
from training.errors import StorageUnavailable
from training.evaluation import format_report
from training.options import EvalConfig, TrainConfig, UsageError, eval_config, train_config
from training.retrain import evaluate, train
from training.store import StoreError

EXIT_OK, EXIT_USAGE, EXIT_DATA = 0, 2, 3
__all__ = ["EvalConfig", "TrainConfig", "main", "train"]

# What each failure is called on stderr and which exit code it gets.
FAILURES: dict[type[Exception], tuple[int, str]] = {
    UsageError: (EXIT_USAGE, "error: "),
    DataError: (EXIT_DATA, "bad data: "),
    StoreError: (EXIT_USAGE, "model store: "),
    StorageUnavailable: (EXIT_USAGE, "database: "),
    FloatingPointError: (EXIT_DATA, ""),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["export"], ["import"]):  # ONNX in and out: training/interop/cli.py
        from training.interop.cli import main as interop_main

        return interop_main(argv)
    try:
        if argv[:1] == ["evaluate"]:
            args = eval_config(argv[1:])
            out = evaluate(args)
            if args.json_output:
                print(json.dumps(out))
            else:
                print(f"{out['name']} version {out['version']}")
                print(format_report(out["scores"]))
            return EXIT_OK
        if argv[:1] == ["train"]:
            argv = argv[1:]
        cfg = train_config(argv)
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
