"""`debiascl export`, `debiascl predict`, `debiascl embed`: take the trained model away.

export writes a self-contained model folder (weights as safetensors, the evaluated linear head,
the preprocessing, class names, config, a model card, a torch.export program); predict
classifies new inputs with it; embed writes the frozen representations of a run or model folder.
The heavy modules are imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from debiascl.cli.options import add_device_option, probe_groups_metavar

INPUT_HELP = (
    "an image folder, a folder with metadata.csv (filename[, split, id, y]), or a CSV of table "
    "rows (the model's feature columns[, id])"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export``, ``predict`` and ``embed`` sub-commands."""
    export = subparsers.add_parser(
        "export",
        help="write a finished, evaluated run as a self-contained model folder",
        description="Write RUN_DIR's encoder (safetensors), the linear head its evaluation "
        "fitted (or a supervised method's own classifier), the preprocessing, class names, "
        "config, a model card (README.md) and a torch.export program (model.pt2) into DIR.",
        epilog="examples:\n  debiascl export runs/wcl --out models/wcl\n"
        "  debiascl export runs/wcl --probe-groups discovered --out models/wcl-discovered\n"
        "The head is the probe `debiascl eval RUN_DIR [--probe-groups G]` fitted and scored.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a finished, evaluated run")
    export.add_argument("--out", required=True, metavar="DIR", help="the model folder to create")
    export.add_argument(
        "--encoder", choices=("d", "b"), help="default: the method's product encoder"
    )
    export.add_argument(
        "--probe-groups",
        metavar=probe_groups_metavar(),
        help="the head: the plain probe (none) or that group-robust probe; default: the "
        "method's headline (own classifier for supervised methods, else the plain probe)",
    )
    export.add_argument(
        "--no-program", action="store_true", help="skip the torch.export program (model.pt2)"
    )
    export.set_defaults(func=run_export)

    predict = subparsers.add_parser(
        "predict",
        help="classify images or table rows with an exported model",
        description="Write one row per sample (id, predicted class, class probabilities).",
    )
    predict.add_argument("model_dir", metavar="MODEL_DIR", help="a folder from debiascl export")
    _add_input_options(predict, "predictions.csv")
    predict.set_defaults(func=run_predict)

    embed = subparsers.add_parser(
        "embed",
        help="write the frozen representations of inputs (features.npy + ids)",
        description="Write the encoder's representations (n, F) float32 as .npy and the ids, in "
        "the same order, as <out stem>.ids.csv.",
    )
    embed.add_argument("model", metavar="RUN_DIR|MODEL_DIR", help="a finished run or model folder")
    embed.add_argument(
        "--encoder", choices=("d", "b"), help="a run's encoder (default: its product encoder)"
    )
    _add_input_options(embed, "features.npy")
    embed.set_defaults(func=run_embed)


def _add_input_options(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("input", metavar="INPUT", help=INPUT_HELP)
    parser.add_argument("--out", required=True, metavar=out.upper(), help=f"e.g. {out}")
    parser.add_argument(
        "--split", choices=("train", "val", "test"), help="rows of one split of a metadata.csv"
    )
    parser.add_argument(
        "--batch-size", type=int, default=512, metavar="B", help="samples per forward pass"
    )
    add_device_option(parser)


def run_export(args: argparse.Namespace) -> int:
    """Export the run; prints the folder."""
    from debiascl.export import export_model

    out = export_model(
        args.run_dir, args.out, args.encoder, args.probe_groups, program=not args.no_program
    )
    print(f"debiascl: model folder {out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Classify INPUT; prints the number of samples (and the accuracy where labels are given)."""
    from debiascl.distributed import resolve_device
    from debiascl.model_folder import Classifier, read_model_folder
    from debiascl.predict import apply_model, write_predictions

    classifier = Classifier(read_model_folder(args.model_dir))
    device = resolve_device(args.device)
    inputs, logits = apply_model(classifier, args.input, args.split, device, args.batch_size)
    result = write_predictions(inputs, logits, classifier.class_names, args.out)
    line = f"debiascl: {len(result.ids)} predictions: {args.out}"
    if result.accuracy is not None:
        line += f" (accuracy {100 * result.accuracy:.2f}% on {result.labelled} labelled samples)"
    print(line)
    return 0


def run_embed(args: argparse.Namespace) -> int:
    """Write the representations of INPUT and their ids."""
    from debiascl.api import load_encoder
    from debiascl.distributed import resolve_device
    from debiascl.predict import apply_model, save_features

    encoder = load_encoder(args.model, args.encoder)
    device = resolve_device(args.device)
    inputs, features = apply_model(encoder, args.input, args.split, device, args.batch_size)
    ids = save_features(Path(args.out), features.numpy(), inputs.ids)
    print(f"debiascl: {len(inputs.ids)} x {features.shape[1]} features: {args.out}, ids: {ids}")
    return 0
