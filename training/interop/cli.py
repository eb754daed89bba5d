"""``bptrain export`` and ``bptrain import``: ONNX in and out of the model store.

    bptrain export NAME[:VERSION] --onnx PATH [--models-dir DIR] [--no-preprocessing]
    bptrain import PATH --name NAME [--models-dir DIR] [--lr LR] [--momentum M]
                   [--labels A,B,...] [--loss LOSS]

The options are ``training/options.py``'s ``ExportConfig`` and ``ImportConfig``.
Exit codes as for training: 0 done, 2 bad usage or store, 3 a model file bpserve cannot
take (the message names the node).  Needs ``pip install 'bpserve[onnx]'``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from training.options import UsageError, export_config, import_config
from training.store import ModelStore, StoreError

EXIT_OK, EXIT_USAGE, EXIT_MODEL = 0, 2, 3


def export(argv: list[str]) -> str:
    from training.interop.onnx_export import export_onnx, save_onnx

    args = export_config(argv)
    name, _, version = args.model.partition(":")
    if version and not version.isdigit():
        raise StoreError(args.model, "version must be a positive integer")
    store = ModelStore(args.models_dir)
    model, manifest = store.load(name, int(version) if version else None)
    source = f"{name}:{manifest.version}"
    proto = export_onnx(model, source=source, preprocessing=not args.no_preprocessing)
    path = save_onnx(proto, args.onnx)
    return f"exported {source} to {path}"


def import_(argv: list[str]) -> str:
    from training.interop.onnx_import import load_onnx

    args = import_config(argv)
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    try:
        model, source = load_onnx(
            args.path, labels=labels, loss=args.loss, learning_rate=args.lr, momentum=args.momentum
        )
    except OSError as exc:
        raise StoreError(args.path, exc.strerror or str(exc)) from None
    store = ModelStore(args.models_dir)
    version = store.save(args.name, model, training={"imported_from": source})
    out = {
        "name": args.name,
        "version": version,
        "path": str(store.version_dir(args.name, version)),
    }
    if args.json_output:
        return json.dumps(out)
    return f"imported {Path(args.path).name} as {args.name} version {version} at {out['path']}"


def main(argv: list[str]) -> int:
    """``argv`` starts with the subcommand ("export" or "import")."""
    from training.interop.layers import InteropError

    try:
        run = export if argv[0] == "export" else import_
        print(run(argv[1:]))
    except ModuleNotFoundError as exc:
        print(f"bptrain: {exc.name} is not installed: pip install 'bpserve[onnx]'", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"bptrain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"bptrain: model store: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InteropError as exc:
        print(
            f"bptrain: {Path(argv[1]).name if argv[0] == 'import' else 'export'}: {exc}",
            file=sys.stderr,
        )
        return EXIT_MODEL
    return EXIT_OK
