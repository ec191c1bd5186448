"""The sub-commands that describe rather than explain: ``layers`` (the layer tree), ``predict`` (the top
classes), ``methods`` (what each method needs and costs) and ``zoo`` (the Keras Applications on offer)."""

from __future__ import annotations

import json

import numpy as np

from ..core import cams
from ..core.gradcam import GradCam
from ..core.layers import default_layer, iter_layers, layer_tree
from . import shared

# -- layers ------------------------------------------------------------------------------
def layers(args) -> int:
    loaded = shared.open_model(args)
    nodes = layer_tree(loaded.model)
    default = default_layer(loaded.model, getattr(loaded.head, "kind", "") == "segmentation")
    rows = [
        {"path": node.path, "type": node.type, "output_shape": list(node.output_shape),
         "eligible": node.eligible, "default": node.path == default}
        for node in iter_layers(nodes)
    ]
    if args.json:
        print(json.dumps({"model": loaded.source, **_outputs_json(loaded), "default_layer": default,
                          "layers": rows}, indent=2))
        return 0
    width = max(len(row["path"]) for row in rows)
    for row in rows:
        mark = "*" if row["default"] else ("+" if row["eligible"] else " ")
        shape = "×".join("?" if side is None else str(side) for side in row["output_shape"][1:])
        print(f"{mark} {row['path']:<{width}}  {row['type']:<24} {shape}")
    print(f"\n+ a map can be taken here   * default layer ({default})")
    if loaded.outputs:
        print(f"\nOutputs (--output NAME; these are the layers of '{loaded.output}'):")
        for info in loaded.outputs:
            print(f"  {'*' if info.name == loaded.output else ' '} {info.describe()}")
    return 0


def _outputs_json(loaded) -> dict:
    """"output" (the one explained) and "outputs" for a model with several; nothing otherwise."""
    if not loaded.outputs:
        return {}
    return {"output": loaded.output,
            "outputs": [{"index": info.index, "name": info.name, "shape": list(info.shape), "kind": info.kind,
                         "explainable": info.usable, "why_not": info.problem or None} for info in loaded.outputs]}


# -- predict -----------------------------------------------------------------------------
def predict(args) -> int:
    loaded = shared.open_model(args)
    engine = GradCam(loaded)
    image = shared.load_picture(args.image)
    prediction = engine.predict(image)
    k = max(1, min(args.top, len(loaded.class_names)))
    # A value head's values keep their order (none is "more predicted"); classes go best first.
    order = (np.arange(len(prediction.probabilities)) if prediction.head == "value"
             else np.argsort(-prediction.probabilities, kind="stable"))[:k]
    rows = [{"class_index": int(i), "class_name": loaded.class_names[i],
             "probability": float(prediction.probabilities[i])} for i in order]
    if args.json:
        print(json.dumps({"image": str(args.image), "model": loaded.source, **_outputs_json(loaded),
                          "head": prediction.head, "predictions": rows}, indent=2))
        return 0
    for row in rows:
        if prediction.head == "value":
            print(f"{row['probability']:>10.4g}  {row['class_name']} ({row['class_index']})")
        else:
            print(f"{row['probability'] * 100:6.2f} %  {row['class_name']} ({row['class_index']})"
                  + ("  of the pixels" if prediction.head == "segmentation" else ""))
    return 0


# -- methods ---------------------------------------------------------------------------
def methods(args) -> int:
    """Every method with what it needs of the model (a layer? gradients? only its answers) and its cost."""
    rows = [{"name": m.name, "title": m.title, "summary": m.summary, "class_specific": m.class_specific,
             "needs": m.needs, "uses_layer": m.uses_layer, "uses_gradients": m.uses_gradients,
             "stepwise": m.stepwise, "forward_passes": m.forward_passes, "cost": m.cost,
             "options": ["--" + name.replace("_", "-") for name in m.options]} for m in cams.METHODS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows) + 2
    for row in rows:
        marks = ["class-specific" if row["class_specific"] else "not class-specific (the same map for every class)",
                 f"needs {row['needs']}", row["cost"]]
        print(f"{row['name']:<{width}}{row['title']} · {' · '.join(marks)}")
        print(f"{'':<{width}}{row['summary']}")
        if row["options"]:
            print(f"{'':<{width}}options: {', '.join(row['options'])}")
    print("\nUse one with --method NAME; explain another score with --versus CLASS or --counterfactual."
          "\nA model file that shows no layers (ONNX, TensorFlow Lite, an exported SavedModel) runs the methods "
          "that need no layer; one without gradients, those that need only answers.")
    return 0


# -- zoo ---------------------------------------------------------------------------------
def zoo(args) -> int:
    from ..core import zoo as registry

    rows = [{"name": name, "input_size": list(registry.entry(name).input_size),
             "cached": registry.weights_path(name).is_file(), "weights": str(registry.weights_path(name))}
            for name in registry.zoo_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        size = "×".join(map(str, row["input_size"]))
        state = "cached" if row["cached"] else "downloads on first use"
        print(f"zoo:{row['name']:<18} {size:<9} {state}")
    return 0
