"""The ``gradcam`` command line: the desktop app's engine for scripts and batch work.

Thin on purpose: it parses arguments, calls ``gradcam_desktop.core`` and prints. Errors are one
plain line on stderr with exit code 1 (``--debug`` shows the traceback); usage errors exit 2.
TensorFlow is imported only by the commands that need it, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: cams.METHODS' names, repeated here so that --help does not import NumPy and OpenCV; a test keeps them equal.
METHOD_NAMES = ("gradcam", "gradcam++", "hirescam", "elementwise", "xgradcam", "layercam", "eigencam", "scorecam",
                "saliency", "integrated-gradients", "smoothgrad", "guided-backprop", "guided-gradcam", "occlusion", "rise")
log = logging.getLogger("gradcam_desktop")


def _quiet_tensorflow(debug: bool) -> None:
    # TensorFlow's C++ start-up chatter would break the "one line on stderr" promise.
    if not debug:
        from .core.runtime import import_tensorflow_quietly

        import_tensorflow_quietly()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's command reference)."""
    parser = argparse.ArgumentParser(
        prog="gradcam",
        description="Grad-CAM for Keras image classifiers: see where the model looks.",
        epilog="MODEL is a .keras/.h5 file (Keras 3, or Keras 2 / tf.keras), a SavedModel folder, an .onnx or "
        ".tflite file, 'demo' "
        "(built in, offline) or 'zoo:NAME' (Keras Applications with ImageNet weights; `gradcam zoo` lists them).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow logs")
        return sub

    def add_model(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", "-m", required=True, metavar="MODEL", help="model file, 'demo' or 'zoo:NAME'")
        sub.add_argument("--trust-model", action="store_true",
                         help="allow Python code stored in the file (Lambda layers and lambda functions), nothing "
                         "else: custom classes, other modules and file-reading layers stay refused. Only for "
                         "files you trust")
        sub.add_argument("--custom-objects", metavar="FILE.py",
                         help="your own Keras layers: when the model file needs classes Keras does not have, "
                         "and only after it passed every other check, run FILE.py so that the classes and "
                         "functions it defines and registers (@keras.saving.register_keras_serializable) can be "
                         "loaded (not what its imports register). The file is Python code that runs with your "
                         "permissions: only for files you trust")
        sub.add_argument("--preprocess", default="auto", metavar="MODE",
                         help="auto (default), raw, unit, symmetric, caffe or torch")
        sub.add_argument("--output", metavar="NAME|INDEX",
                         help="for a model with several outputs: the one to explain (default: the sidecar's "
                         "\"output\", else the first that can be explained; `gradcam layers` lists them)")

    def add_map(sub: argparse.ArgumentParser, *, fill: bool = True) -> None:
        sub.add_argument("--layer", "-l", action="append", metavar="PATH",
                         help="layer path (default: last eligible; see `gradcam layers`); give it more than once "
                         "to fuse the maps of several layers")
        sub.add_argument("--class", "-c", dest="cls", metavar="INDEX|NAME", help="class to explain (default: the top class)")
        sub.add_argument("--method", metavar="NAME",
                         help=f"method: {', '.join(METHOD_NAMES)} (default gradcam, or occlusion for a file that "
                         "shows no layers; see `gradcam methods`)")
        sub.add_argument("--versus", metavar="INDEX|NAME",
                         help="explain why the class rather than this one (the score y_class − y_versus)")
        sub.add_argument("--counterfactual", action="store_true",
                         help="explain what speaks against the class (the score −y_class)")
        sub.add_argument("--region", metavar="TOP,LEFT,BOTTOM,RIGHT", type=_region,
                         help="a segmentation model: sum the class's scores over this box (fractions of the "
                         "picture, 0–1) instead of over the class's predicted mask")
        sub.add_argument("--max-channels", type=int, metavar="N",
                         help="Score-CAM only: use the N feature maps of largest spatial variance (faster)")
        sub.add_argument("--window", type=int, metavar="W",
                         help="occlusion: the square's side in model-input pixels (default 16 at 224², scaled)")
        sub.add_argument("--stride", type=int, metavar="S", help="occlusion: the square's step (default half the window)")
        if fill:
            sub.add_argument("--baseline", type=float, metavar="V", dest="fill_baseline",
                             help="occlusion and integrated-gradients: the value hidden pixels take, in the model's "
                             "input space (default 0)")
        sub.add_argument("--steps", type=int, metavar="M", help="integrated-gradients: points on the path (default 50)")
        sub.add_argument("--samples", type=int, metavar="N",
                         help="smoothgrad: noisy copies (default 25); rise: random masks (default 4000)")
        sub.add_argument("--seed", type=int, metavar="N", help="smoothgrad and rise: the random seed (repeatable maps)")

    sub = add("layers", "List the model's layers and where a map can be taken.")
    add_model(sub)
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add("predict", "Classify an image.")
    add_model(sub)
    sub.add_argument("--image", "-i", required=True, metavar="IMAGE")
    sub.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to show (default 5)")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add("explain", "Compute the class activation map of one image.")
    add_model(sub)
    sub.add_argument("--image", "-i", required=True, metavar="IMAGE")
    add_map(sub)
    sub.add_argument("--out", "-o", metavar="PNG", help="write the overlay (image-sized PNG)")
    sub.add_argument("--heatmap", metavar="NPY", help="write the raw map (float32 at the layer's resolution, or the "
                     "model input size for fused layers; after the method's ReLU); a pixel method's signed attribution "
                     "at the model input (H × W × C; occlusion and RISE: H × W)")
    sub.add_argument("--alpha", type=_alpha, default=0.5, metavar="A", help="overlay opacity 0–1 (default 0.5)")
    sub.add_argument("--colormap", default="jet", metavar="NAME", help="jet (default), turbo, viridis, inferno, …")
    sub.add_argument("--caption", action="store_true", help=_CAPTION_HELP)
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = add("batch", "Explain many images; writes overlays and results.csv.")
    add_model(sub)
    add_map(sub)
    sub.add_argument("--out-dir", required=True, metavar="DIR", help="output folder (created if missing)")
    sub.add_argument("--heatmaps", action="store_true", help="also write each raw map as <stem>.npy")
    sub.add_argument("--alpha", type=_alpha, default=0.5, metavar="A")
    sub.add_argument("--colormap", default="jet", metavar="NAME")
    sub.add_argument("--caption", action="store_true", help=_CAPTION_HELP)
    sub.add_argument("--trust", action="store_true",
                     help="add each map's trust figures (deletion/insertion AUC, Average Drop, sanity check) to "
                     "results.csv; about 100 extra forward passes per picture")
    sub.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")

    sub = add("trust", "Can this map be trusted? Deletion/insertion curves, Average Drop and a sanity check.")
    add_model(sub)
    sub.add_argument("--image", "-i", required=True, metavar="IMAGE")
    add_map(sub, fill=False)  # trust's --baseline is the random-order curve
    sub.add_argument("--baseline", action="store_true",
                     help="also compute the curves with the pixels in random order, for comparison")
    sub.add_argument("--no-sanity", action="store_true",
                     help="skip the sanity check (the map recomputed on a copy of the model with random weights)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = add("triage", "Predict a labelled folder: accuracy, confusion matrix, and maps of the mistakes.")
    add_model(sub)
    sub.add_argument("--layer", "-l", metavar="PATH", help="layer of the maps (default: last eligible)")
    sub.add_argument("--method", metavar="NAME",
                     help=f"CAM method of the maps: {', '.join(METHOD_NAMES)} (default gradcam)")
    sub.add_argument("--explain", choices=("wrong", "all", "none"), default="wrong",
                     help="which pictures get a map (the predicted class beside the true class) in OUT/maps: "
                     "wrong (default), all or none")
    sub.add_argument("--out-dir", required=True, metavar="DIR",
                     help="writes triage.csv, confusion.csv and maps/ here (created if missing)")
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_ray(sub)
    sub.add_argument("source", metavar="FOLDER|CSV",
                     help="a folder with one subfolder per class (named by class name or index), or a CSV of "
                     "path,label")

    def add_patterns(sub: argparse.ArgumentParser) -> None:
        add_model(sub)
        sub.add_argument("--layer", "-l", metavar="PATH", help="layer of the maps (default: last eligible)")
        sub.add_argument("--method", metavar="NAME", help="method of the maps (default gradcam; see `gradcam methods`)")
        sub.add_argument("--by", choices=("predicted", "true"), default="predicted",
                         help="group the pictures by their predicted class (default) or their labelled class")
        sub.add_argument("--clusters", type=int, metavar="K",
                         help="clusters per class (default: chosen by the eigengap, at most 8)")
        sub.add_argument("--masks", metavar="DIR", help="object masks: DIR/<stem>.png, non-zero = the object "
                         "(adds each map's inside share: its energy inside the object)")
        sub.add_argument("--boxes", metavar="CSV", help="object boxes: a CSV of path,x0,y0,x1,y1 in picture pixels")
        sub.add_argument("--colormap", default="jet", metavar="NAME")
        sub.add_argument("source", metavar="FOLDER|CSV",
                         help="a folder with one subfolder per class, or a CSV of path,label")

    sub = add("patterns", "What does the model rely on per class? Clusters of a labelled folder's maps (SpRAy), "
              "flagging small far ones, where shortcuts hide.")
    add_patterns(sub)
    sub.add_argument("--out-dir", required=True, metavar="DIR",
                     help="writes patterns.csv, clusters.csv and clusters/*.png here (created if missing)")
    sub.add_argument("--json", action="store_true", help="print the clusters as JSON")
    _add_ray(sub)

    sub = add("report", "One self-contained HTML page to share: accuracy, confusion matrix, each class's "
              "clusters and the mistakes with their maps.")
    add_patterns(sub)
    sub.add_argument("--out", "-o", required=True, metavar="HTML", help="the page to write (report.html)")

    sub = add("methods", "List the methods: one sentence each, what they need of the model and what they cost.")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add("zoo", "List the Keras Applications models and whether their weights are cached.")
    sub.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_ray(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run on Ray Data (pip install \"gradcam-desktop[ray]\"): an actor pool with one model per "
                     "CPU reads and predicts the pictures, the same rows and files as without it. No ADDRESS: a "
                     "local Ray instance; host:port (the head's) or auto: that cluster, whose nodes must "
                     "read the pictures' paths (docs/SCALING.md). Give it after FOLDER|CSV, or as --ray=ADDRESS")


_CAPTION_HELP = "burn what the map shows (class, probability, layer) and the colour legend into the picture"


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number from 0 to 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be from 0 to 1, not {value}")
    return value


def _region(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        box = tuple(float(part) for part in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or not all(0.0 <= side <= 1.0 for side in box) or not (box[0] < box[2] and box[1] < box[3]):
        raise argparse.ArgumentTypeError(f"a region is TOP,LEFT,BOTTOM,RIGHT: four fractions of the picture from 0 to 1, "
                                         f"top < bottom and left < right (not {text!r})")
    return box  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gradcam`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    _quiet_tensorflow(args.debug)
    # Our own logger only: a root handler would also print TensorFlow's Python warnings.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.debug else logging.WARNING)
    if not args.debug:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from . import commands  # imports TensorFlow lazily, after the log level is set
    from .core.errors import GradCamError

    if getattr(args, "colormap", None) is not None:
        from .core.overlay import COLORMAPS

        if args.colormap not in COLORMAPS:
            print(f"gradcam: error: unknown colormap {args.colormap!r}; choose one of: "
                  f"{', '.join(COLORMAPS)}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return commands.COMMANDS[args.command](args)
    except GradCamError as error:
        if args.debug:
            log.exception("failed")
        print(f"Error: {commands.one_line(str(error))}", file=sys.stderr)  # a file name never splits it
        return EXIT_FAILED
    except BrokenPipeError:
        # `gradcam ... | head`: the reader left; not an error worth a message.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as error:  # the promise: no traceback for users unless --debug
        if args.debug:
            raise
        from .core.errors import unexpected_message

        print(f"Error: {commands.one_line(unexpected_message(error))} (run again with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
