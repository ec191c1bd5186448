"""What the ``gradcam`` sub-commands share: one-line messages, output-path checks, opening the model and
pictures with their notes, the map options of --method/--class/--versus/--counterfactual, a map's
description and notes, and the terminal progress bars (rich, on a terminal only)."""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path

from ..core import cams
from ..core.batch import shown_path
from ..core.errors import MethodError, OutputError
from ..core.gradcam import GradCam
from ..core.images import LoadedImage, load_image
from ..core.models import LoadedModel, load_model

#: The method when --method is not given (a file that shows no layers gets the first it can run).
DEFAULT_METHOD = "gradcam"
#: Unicode categories that break a line or drive a terminal: controls (\n, \r, ESC, DEL …), U+2028, U+2029.
_LINE_BREAKING = frozenset(("Cc", "Zl", "Zp"))


def one_line(text: str) -> str:
    """``text`` as one line: line breaks and control characters (from a file name, say) shown as
    escapes (``\\n``, ``\\x1b``), so that no message splits or drives the terminal."""
    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in _LINE_BREAKING else c for c in text)


def check_output_path(path: str | os.PathLike[str], option: str, *, folder: bool = False) -> None:
    """Refuse, before the model is opened and before anything is created, an output path that is
    surely a mistake: a line break or control character in it (a paste gone wrong), or, for a
    ``folder``, an existing file."""
    text = os.fspath(path)
    if any(unicodedata.category(c) in _LINE_BREAKING for c in str(text)):
        raise OutputError(f"The {option} path {shown_path(path)} holds a line break or another control character: "
                          "give it again without them.")
    if folder:  # the nearest part that exists must be a folder
        target = Path(path)
        existing = next((part for part in (target, *target.parents) if part.exists()), None)
        if existing is not None and not existing.is_dir():
            raise OutputError(f"Cannot create the output folder {shown_path(path)}: {shown_path(existing)} is a file. "
                              "Choose another folder.")


def note(text: str) -> None:
    print(one_line(f"Note: {text}"), file=sys.stderr)


def download_progress():
    """A rich download bar on a terminal, nothing otherwise (scripts get clean output)."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                        console=stderr_console(), transient=True)
    task = progress.add_task("Downloading weights", total=None)

    def update(done: int, total: int | None) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    return update, progress


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def open_model(args) -> LoadedModel:
    custom = getattr(args, "custom_objects", None)
    if custom:
        from ..core.custom_objects import load_for_model

        # --custom-objects is the user's trust in this file; it runs only if the model needs it,
        # after the model passed every check that does not need its classes.
        note(load_for_model(custom, args.model, trust=args.trust_model).note)
    update, progress = download_progress()
    try:
        loaded = load_model(args.model, trust=args.trust_model, preprocess=args.preprocess, progress=update,
                            output=getattr(args, "output", None))
    finally:
        if progress is not None:
            progress.stop()
    for notice in loaded.notices:
        note(notice)
    if loaded.outputs and not getattr(args, "output", None):
        others = ", ".join(info.name for info in loaded.outputs if info.name != loaded.output)
        note(f"{loaded.display_name} has {len(loaded.outputs)} outputs: explaining '{loaded.output}' "
             f"(--output {others} for another).")
    return loaded


def load_picture(path: str | Path) -> LoadedImage:
    image = load_image(path)
    for notice in image.notices:
        note(f"{image.name}: {notice}")
    return image


# -- the map options of explain and batch -------------------------------------------------
def map_options(args) -> dict:
    """The engine's options from the arguments; the checks that need no model (one line each)."""
    chosen = cams.method(args.method or DEFAULT_METHOD)
    if args.versus is not None and args.counterfactual:
        raise MethodError("--versus and --counterfactual cannot be combined: a map explains one score.")
    # --baseline is "fill_baseline" where it is the hidden pixels' value (trust's --baseline is a curve).
    given = {name: getattr(args, "fill_baseline" if name == "baseline" else name, None) for name in cams.OPTION_NAMES}
    # Without --method the method is settled once the model is open (settle_method checks them then).
    options = chosen.check_options(given) if args.method else {k: v for k, v in given.items() if v is not None}
    for name in ("max_channels", "window", "stride", "steps", "samples"):
        if name in options and options[name] < 1:
            raise MethodError(f"--{name.replace('_', '-')} must be 1 or more, not {options[name]}.")
    if chosen.uses_layer is False and args.layer:
        raise MethodError(f"{chosen.title} works on the input pixels and takes no --layer.")
    layers = list(dict.fromkeys(args.layer or []))  # a layer named twice would only weigh double
    region = getattr(args, "region", None)
    return {"layer": None if not layers else layers[0] if len(layers) == 1 else layers, "method": chosen,
            "counterfactual": bool(args.counterfactual), "method_options": options,
            **({"region": region} if region is not None else {})}


def settle_method(engine: GradCam, args, options: dict) -> cams.Method:
    """Set ``options["method"]`` (``map_options``) to the method to run and return it: the one asked for
    (refused in one line when the model cannot run it), or, when none was asked for and the model
    cannot run Grad-CAM (a file that shows no layers), the first one it can — said in a note. Its
    options are checked against it."""
    chosen = options["method"]
    if args.method is None and not engine.offers(chosen):
        chosen = next(m for m in cams.METHODS.values() if engine.offers(m))
        note(f"{engine.loaded.display_name} shows no layers: explained with {chosen.title} "
             f"(choose another with --method; `gradcam methods` says what each needs).")
    options["method"] = engine.check_method(chosen)
    options["method_options"] = chosen.check_options(options.get("method_options"))
    return chosen


def target_of(engine: GradCam, args) -> tuple[int | None, int | None]:
    """(class index, versus index) from --class and --versus, checked by the engine (MethodError when
    they name one class)."""
    target = engine.target(args.cls, args.versus, args.counterfactual, getattr(args, "region", None))
    return target.class_index, target.versus


def method_notes(args) -> list[str]:
    """Eigen-CAM's map is the same for every class: say so when a class or score was asked for."""
    chosen = cams.method(args.method or DEFAULT_METHOD)
    asked = [flag for flag, given in (("--class", args.cls is not None), ("--versus", args.versus is not None),
                                      ("--counterfactual", args.counterfactual)) if given]
    if chosen.class_specific or not asked:
        return []
    return [f"{chosen.title} is not class-specific: its map is the same for every class, "
            f"so {' and '.join(asked)} {'does' if len(asked) == 1 else 'do'} not change it."]


def describe(result) -> str:
    """"Grad-CAM++ · 'cat' rather than 'dog'": the method and the score a map explains."""
    chosen = cams.METHODS.get(result.method)
    title = chosen.title if chosen else result.method
    if chosen is not None and not chosen.class_specific:
        title += " (not class-specific)"
    if result.score_kind == "versus":
        return f"{title} · '{result.class_name}' rather than '{result.versus_name}'"
    if result.score_kind == "counterfactual":
        return f"{title} · against '{result.class_name}'"
    return f"{title} · '{result.class_name}'"


def flat_note(result) -> str | None:
    if not result.flat:
        return None
    if float(result.raw.max()) > 0:
        return ("the map is uniform: this layer's grid is too coarse or too even to show where. "
                "Try an earlier layer.")
    what = {"versus": f"favours '{result.class_name}' over '{result.versus_name}'",
            "counterfactual": f"speaks against '{result.class_name}'"}.get(result.score_kind, "speaks for this class")
    return f"the map is all zero: nothing at this layer {what}. Try another layer, class or method."


def patch_note(engine: GradCam, result) -> str | None:
    """A Vision Transformer's token layer gives one value per patch: say so (issue 11)."""
    if result.patch_grid is None:
        return None
    grids = [engine.capture(layer).grid for layer in (result.layers or (result.layer,))]
    grid = next((grid for grid in grids if grid is not None), None)
    if grid is None:
        return None
    dropped = f", {grid.prefix} class token(s) left out" if grid.prefix else ""
    return (f"this is a transformer's token layer: the map is at patch resolution "
            f"({grid.height}×{grid.width} patches{dropped}).")


def step_progress(label: str):
    """A rich bar for Score-CAM's mask batches on a terminal (update, bar); (None, None) otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=stderr_console(),
                        transient=True)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    return update, progress


def count_bar(label: str, total: int):
    """A started rich bar counting ``total`` items on a terminal; None otherwise (scripts get clean output)."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=stderr_console())
    progress.add_task(label, total=total)
    progress.start()
    return progress


def say(bar, line: str) -> None:
    """One line on stderr (as one line), above ``bar`` when one is showing."""
    line = one_line(line)
    if bar is not None:
        bar.console.print(line, markup=False, highlight=False)
    else:
        print(line, file=sys.stderr)


def open_labelled(args):
    """(model, its engine, the labels) for the folder commands (triage, patterns, report): the model
    opened, --layer checked before any picture, the labelled folder or CSV read (its warning printed)."""
    from ..core.layers import check_eligible
    from ..core.triage import check_classifier, read_labels

    loaded = open_model(args)
    if args.layer:
        check_eligible(loaded.model, args.layer)
    engine = GradCam(loaded)
    check_classifier(engine)
    labels = read_labels(args.source, loaded.class_names)
    if labels.warning:
        print(f"Warning: {labels.warning}", file=sys.stderr)
    return loaded, engine, labels
