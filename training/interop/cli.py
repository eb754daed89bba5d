"""``bptrain export`` and ``bptrain import``: ONNX in and out of the model store.

    bptrain export NAME[:VERSION] --onnx PATH [--models-dir DIR] [--no-preprocessing]
    bptrain import PATH --name NAME [--models-dir DIR] [--lr LR] [--momentum M]
                   [--labels A,B,...] [--loss LOSS]

Exit codes as for training: 0 done, 2 bad usage or store, 3 a model file bpserve cannot
take (the message names the node).  Needs ``pip install 'bpserve[onnx]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.store import ModelStore, StoreError

EXIT_OK, EXIT_USAGE, EXIT_MODEL = 0, 2, 3


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bptrain export", description="Write a version as ONNX.")
    p.add_argument("model", metavar="NAME[:VERSION]", help="default version: the latest")
    p.add_argument("--onnx", required=True, metavar="PATH", help="the .onnx file to write")
    p.add_argument("--models-dir", default="models")
    p.add_argument(
        "--no-preprocessing",
        action="store_true",
        help="leave the preprocessing out: the graph then takes preprocessed rows",
    )
    return p


def _import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bptrain import", description="Publish an ONNX MLP as a new version."
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--name", required=True)
    p.add_argument("--models-dir", default="models")
    p.add_argument("--lr", type=float, help="online learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, help="online momentum (default 0.9)")
    p.add_argument("--labels", help="class names, comma-separated, in output order")
    p.add_argument("--loss", help="quadratic, cross_entropy or binary_cross_entropy")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def export(argv: list[str]) -> str:
    from training.interop.onnx_export import export_onnx, save_onnx

    args = _export_parser().parse_args(argv)
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

    args = _import_parser().parse_args(argv)
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
    if args.json:
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
