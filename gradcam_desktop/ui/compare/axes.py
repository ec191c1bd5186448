"""What the compare grid shows, without Qt: its axes, the map each cell asks for, and its words.

A grid has a *row* dimension and a *column* dimension, each one of ``DIMENSIONS`` ("method",
"class", "layer") with a list of values; the third dimension and the score (class logit,
versus another class, against the class) are fixed to what the main view shows (``Context``).
Kept apart from the widgets so the rules (swapping dimensions, defaults that follow the picture,
captions) are plain functions a test can call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gradcam_desktop.core import annotate, cams

__all__ = ["DIMENSIONS", "MAX_VALUES", "CellKey", "Context", "Grid", "Score", "method_title"]

DIMENSIONS = ("method", "class", "layer")
TITLES = {"method": "Methods", "class": "Classes", "layer": "Layers"}
SINGULAR = {"method": "Method", "class": "Class", "layer": "Layer"}
#: Values per axis: an 8 × 8 grid already needs a large screen and 64 maps.
MAX_VALUES = 8
#: The methods a new grid compares: fast, gradient-based, and known to disagree usefully.
DEFAULT_METHODS = ("gradcam", "gradcam++", "layercam")
#: Classes offered in the picker: the most likely ones (1,000 ImageNet entries are no menu).
CLASS_CHOICES = 10
DEFAULT_CLASSES = 3
DEFAULT_LAYERS = 3


def method_title(name: str) -> str:
    """"Grad-CAM++" for "gradcam++" (the name itself for a method the registry does not know)."""
    return getattr(cams.METHODS.get(name), "title", None) or ("Grad-CAM" if name == "gradcam" else name)


def method_names() -> tuple[str, ...]:
    """The engine's methods, registry order."""
    return tuple(cams.METHODS)


@dataclass(frozen=True)
class CellKey:
    """The map one cell shows: what ``request(layer, class_index, method)`` is called with."""

    layer: str
    class_index: int
    method: str

    def value(self, dimension: str) -> Any:
        """This key's value along ``dimension``."""
        return {"method": self.method, "class": self.class_index, "layer": self.layer}[dimension]


@dataclass(frozen=True)
class Score:
    """The explained score, shared by every cell: the class logit, versus another class, or against it."""

    versus: int | None = None
    counterfactual: bool = False
    region: tuple[float, float, float, float] | None = None  # a segmentation model's box (MapSpec.region)

    @classmethod
    def of(cls, result: Any) -> Score:
        """The score a ``MapResult`` explains (results from before issue 7 explain the class logit)."""
        return cls(getattr(result, "versus_index", None), bool(getattr(result, "counterfactual", False)),
                   getattr(result, "region", None))

    def kwargs(self) -> dict[str, Any]:
        """The request's score keywords: only those that differ from the class logit, so a plain
        grid calls ``request(layer, class_index, method)`` with nothing else."""
        out: dict[str, Any] = {}
        if self.versus is not None:
            out["versus"] = self.versus
        if self.counterfactual:
            out["counterfactual"] = True
        if self.region is not None:
            out["region"] = self.region
        return out


@dataclass(frozen=True)
class Context:
    """What the main view shows (its map's layer, class, method and score, the picture's
    prediction) and what the grid may choose from (classes, eligible layers, methods)."""

    class_names: tuple[str, ...]
    layers: tuple[str, ...]
    current: CellKey
    score: Score = Score()
    probabilities: tuple[float, ...] = ()
    methods: tuple[str, ...] = field(default_factory=method_names)
    head: str = ""  # Prediction.head: how a class's "probability" reads (annotate.format_score)

    @classmethod
    def of(cls, result: Any, class_names, layers, methods=()) -> Context:
        """The context of the main view's ``MapResult`` for a model's class names, eligible layers and the
        methods it can run (empty: all; a file that shows no layers runs only some)."""
        probabilities = getattr(getattr(result, "prediction", None), "probabilities", None)
        return cls(class_names=tuple(class_names), layers=tuple(layers), methods=tuple(methods) or method_names(),
                   current=CellKey(result.layer, int(result.class_index), result.method or "gradcam"),
                   score=Score.of(result),
                   probabilities=tuple(float(p) for p in probabilities) if probabilities is not None else (),
                   head=str(getattr(getattr(result, "prediction", None), "head", "") or ""))

    # -- choices -------------------------------------------------------------------------------
    def choices(self, dimension: str) -> tuple:
        """What an axis of ``dimension`` may show, in menu order."""
        if dimension == "method":
            return self.methods
        if dimension == "layer":
            return self.layers if self.current.layer in self.layers else self.layers + (self.current.layer,)
        ranked = self._ranked_classes()
        chosen = ranked[:CLASS_CHOICES]
        return tuple(chosen) if self.current.class_index in chosen else tuple(chosen) + (self.current.class_index,)

    def defaults(self, dimension: str) -> tuple:
        """A new axis of ``dimension``: a few methods, the top classes, or the layers up to the shown one."""
        if dimension == "method":
            wanted = [m for m in DEFAULT_METHODS if m in self.methods]
            if self.current.method not in wanted:
                wanted = [self.current.method] + wanted[: len(DEFAULT_METHODS) - 1]
            return tuple(m for m in self.methods if m in wanted) or (self.current.method,)
        if dimension == "class":
            return tuple(self._ranked_classes()[:DEFAULT_CLASSES]) or (self.current.class_index,)
        layers = self.choices("layer")
        end = layers.index(self.current.layer) + 1
        return layers[max(0, end - DEFAULT_LAYERS):end]

    def _ranked_classes(self) -> list[int]:
        count = len(self.class_names) or len(self.probabilities)
        if len(self.probabilities) == count and count and self.head != "value":  # values keep their order
            return sorted(range(count), key=lambda i: -self.probabilities[i])
        return list(range(count))

    # -- words ---------------------------------------------------------------------------------
    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def probability(self, index: int) -> float | None:
        return self.probabilities[index] if 0 <= index < len(self.probabilities) else None

    def label(self, dimension: str, value: Any) -> str:
        """A header: "Grad-CAM++", "'star'", "last_conv"."""
        if dimension == "method":
            return method_title(value)
        if dimension == "class":
            return f"'{self.class_name(value)}'"
        return str(value)

    def detail(self, dimension: str, value: Any) -> str:
        """A header's second line: a class's probability; nothing for the others."""
        p = self.probability(value) if dimension == "class" else None
        return annotate.format_score(p, self.head) if p is not None else ""

    def score_text(self, class_index: int) -> str:
        """What a map of ``class_index`` explains under this context's score: "'star'", "'star' vs
        'circle'" or "against 'star'"."""
        name = f"'{self.class_name(class_index)}'"
        if self.score.counterfactual:
            return f"against {name}"
        if self.score.versus is not None:
            return f"{name} vs '{self.class_name(self.score.versus)}'"
        return name

    def caption(self, key: CellKey) -> str:
        """A cell's caption: method · class (and score) · layer."""
        return f"{method_title(key.method)} · {self.score_text(key.class_index)} · {key.layer}"

    def fixed_text(self, dimension: str) -> str:
        """The control row's note on the fixed dimension and the score: "Layer: last_conv"."""
        value = self.current.value(dimension)
        text = f"{SINGULAR[dimension]}: {self.label(dimension, value)}"
        if self.score.counterfactual:
            text += " · against the class"
        elif self.score.versus is not None:
            text += f" · versus '{self.class_name(self.score.versus)}'"
        return text


@dataclass(frozen=True)
class Grid:
    """The two axes: a dimension and its values each; ``auto_*`` axes follow the context (new picture:
    new top classes) until the user picks their values."""

    rows: str = "method"
    row_values: tuple = ()
    columns: str = "class"
    column_values: tuple = ()
    auto_rows: bool = True
    auto_columns: bool = True

    @property
    def fixed(self) -> str:
        """The third dimension, taken from the main view."""
        return next(d for d in DIMENSIONS if d not in (self.rows, self.columns))

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_values), len(self.column_values)

    def key(self, row: int, column: int, context: Context) -> CellKey:
        """The map of cell (row, column)."""
        values = {self.rows: self.row_values[row], self.columns: self.column_values[column],
                  self.fixed: context.current.value(self.fixed)}
        return CellKey(layer=values["layer"], class_index=int(values["class"]), method=values["method"])

    def keys(self, context: Context) -> list[list[CellKey]]:
        rows, columns = self.shape
        return [[self.key(r, c, context) for c in range(columns)] for r in range(rows)]

    def with_dimension(self, axis: str, dimension: str, context: Context) -> Grid:
        """``axis`` ("rows"/"columns") shows ``dimension``; choosing the other axis's dimension swaps them."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; choose one of: {', '.join(DIMENSIONS)}")
        other = "columns" if axis == "rows" else "rows"
        if getattr(self, axis) == dimension:
            return self
        if getattr(self, other) == dimension:
            return replace(self, rows=self.columns, row_values=self.column_values, auto_rows=self.auto_columns,
                           columns=self.rows, column_values=self.row_values, auto_columns=self.auto_rows)
        values = "row_values" if axis == "rows" else "column_values"
        changes: dict[str, Any] = {axis: dimension, values: context.defaults(dimension), f"auto_{axis}": True}
        return replace(self, **changes)

    def with_values(self, axis: str, values, context: Context) -> Grid:
        """``axis`` shows ``values`` (in the order of the dimension's choices, at most ``MAX_VALUES``)."""
        dimension = getattr(self, axis)
        order = context.choices(dimension)
        chosen = tuple(v for v in order if v in set(values))[:MAX_VALUES]
        name = "row_values" if axis == "rows" else "column_values"
        changes: dict[str, Any] = {name: chosen, f"auto_{axis}": False}
        return replace(self, **changes)

    def adapted(self, context: Context) -> Grid:
        """This grid for a new context: automatic axes take the new defaults, chosen values that no
        longer exist (another model's layers) are dropped, and an empty axis falls back to defaults."""
        out = self
        for axis, name in (("rows", "row_values"), ("columns", "column_values")):
            dimension = getattr(self, axis)
            values = getattr(self, name)
            if not getattr(self, f"auto_{axis}"):
                choices = set(context.choices(dimension))
                values = tuple(v for v in values if v in choices)
            if getattr(self, f"auto_{axis}") or not values:
                changes: dict[str, Any] = {name: context.defaults(dimension), f"auto_{axis}": True}
            else:
                changes = {name: values}
            out = replace(out, **changes)
        return out
