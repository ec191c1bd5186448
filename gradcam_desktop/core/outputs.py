"""A model with several outputs: what each one is, and the model seen through the one explained.

A network with an age and a gender head, or a classifier with an auxiliary output, has several
outputs; a map explains one score of one of them. ``describe`` says, for each output, its name,
shape and kind of head (heads.py: softmax, logits, binary, multilabel, value, segmentation — or
why it cannot be explained); ``pick`` finds the output the
user named (``--output NAME|INDEX``, the sidecar's ``"output"``) or the first one that can be
explained; ``through`` is the model seen through that output — a functional model over the same
layers and weights (nothing is copied), whose graph holds only the layers that lead to it. The
engine then explains it as any one-output model: its layer tree, heads, maps, scores, trust and
triage are that output's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backend import keras_of
from .errors import ModelLoadError

__all__ = ["OutputInfo", "describe", "output_name", "pick", "through"]


@dataclass(frozen=True)
class OutputInfo:
    """One output of a model: its place, name, shape (batch first, None = any) and head kind;
    ``problem`` says why it cannot be explained ("" when it can)."""

    index: int
    name: str
    shape: tuple[int | None, ...]
    kind: str = ""
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        """'gender: (batch, 2), softmax' — for menus and messages."""
        shape = ", ".join("batch" if i == 0 else str(side) for i, side in enumerate(self.shape))
        what = self.problem if self.problem else self.kind
        return f"{self.name}: ({shape}), {what}"


def output_name(model, index: int) -> str:
    names = getattr(model, "output_names", None)
    if isinstance(names, (list, tuple)) and index < len(names) and names[index]:
        return str(names[index])
    history = getattr(model.outputs[index], "_keras_history", None)
    layer = history[0] if history else None
    return str(getattr(layer, "name", None) or f"output {index}")


def describe(model, heads: str | dict | None = None, loss=None) -> list[OutputInfo]:
    """Every output of ``model``, in order. ``heads``: the sidecar's declared head kind(s) (one for
    all, or by output name); ``loss``: the compiled loss the file records (heads.loss_name)."""
    from .heads import detect_head, loss_name

    found = []
    for index, tensor in enumerate(model.outputs):
        shape = tuple(None if side is None else int(side) for side in tensor.shape)
        name = output_name(model, index)
        if len(shape) not in (2, 4) or not shape[-1]:
            problem = (f"an output of shape {shape}: Grad-CAM Desktop explains (batch, classes), (batch, values) "
                       "and (batch, height, width, classes) outputs")
            found.append(OutputInfo(index, name, shape, "other", problem))
            continue
        declared = heads.get(name) if isinstance(heads, dict) else heads
        try:
            kind = detect_head(through(model, index), declared, loss_name(loss, name, index)).kind
        except ModelLoadError as error:
            found.append(OutputInfo(index, name, shape, "", str(error)))
            continue
        found.append(OutputInfo(index, name, shape, kind))
    return found


def pick(outputs: list[OutputInfo], wanted: str | int | None, model_name: str) -> OutputInfo:
    """The output named by ``wanted`` (a name, or an index as int or digits), else the first one that can be
    explained. ModelLoadError (one line, listing the outputs) when there is no such output or it
    cannot be explained."""
    listing = "; ".join(info.describe() for info in outputs)
    if wanted is None or wanted == "":
        usable = [info for info in outputs if info.usable]
        if not usable:
            raise ModelLoadError(f"None of the {len(outputs)} outputs of {model_name} can be explained ({listing}).")
        return usable[0]
    chosen = None
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
        number = int(wanted)
        chosen = outputs[number] if 0 <= number < len(outputs) else None
    if chosen is None:
        chosen = next((info for info in outputs if info.name == str(wanted)), None)
    if chosen is None:
        raise ModelLoadError(f"{model_name} has no output '{wanted}'. Its outputs: {listing}.")
    if not chosen.usable:
        raise ModelLoadError(f"Output '{chosen.name}' of {model_name} cannot be explained: {chosen.problem}.")
    return chosen


def through(model, index: int):
    """``model`` seen through its output ``index``: the same layers and weights, one output."""
    if len(model.outputs) == 1:
        return model
    keras = keras_of(model)
    return keras.Model(model.inputs, model.outputs[index], name=model.name)
