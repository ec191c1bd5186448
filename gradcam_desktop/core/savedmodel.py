"""A TensorFlow SavedModel folder, checked before TensorFlow loads, restores or runs any of it.

A SavedModel is a program: ``saved_model.pb`` holds graphs of TensorFlow operations, and loading
it defines every function in them and runs some (resource initializers) — an operation may read or
write files (``ReadFile``, ``WriteFile``, ``MatchingFiles``, ``SaveV2``), call back into Python
(``PyFunc``, ``EagerPyFunc``) or print to a file. So, with the protobuf parser alone (no graph is
imported):

1. every operation in the graphs must be tensor math from an allowlist (``COMPUTE_OPS``); the
   checkpoint operations that ``tf.saved_model.save`` writes into its own save/restore functions
   are allowed there only, in functions no model function can call — one refusal names the
   operation and the function that holds it;
2. the folder must carry Keras metadata (``keras_metadata.pb``, written by tf.keras/tf_keras
   ``model.save(folder)``): the root object's config is what Keras 2 rebuilds, and it is then
   scanned like any Keras 2 config (safety.py); every other object's config is scanned too;
3. the variables' checkpoint index declares the stored weights' sizes (read without the data).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .archive import WeightsSummary
from .errors import ModelLoadError, UnsafeModelError

MAX_GRAPH_BYTES = 256 * 1024**2      # DenseNet121's saved_model.pb is 6 MB
MAX_METADATA_BYTES = 64 * 1024**2    # and its keras_metadata.pb 0.9 MB

#: Operations a Keras image classifier's functions are made of: arithmetic, neural-network
#: kernels, array shuffling, variables, random numbers (dropout, augmentation) and control flow.
COMPUTE_OPS = frozenset("""
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Assert AssignAddVariableOp
AssignSubVariableOp AssignVariableOp Atan Atan2 Atanh AvgPool AvgPool3D BatchMatMul BatchMatMulV2
BatchMatMulV3 BatchToSpaceND BiasAdd BiasAddV1 Bitcast BroadcastArgs BroadcastGradientArgs BroadcastTo Cast
Ceil CheckNumerics CheckNumericsV2 ClipByValue Complex ComplexAbs Concat ConcatOffset ConcatV2 Const Conv2D
Conv2DBackpropFilter Conv2DBackpropInput Conv3D Conv3DBackpropInputV2 Cos Cosh CropAndResize Cumprod Cumsum
DepthToSpace DepthwiseConv2dNative DepthwiseConv2dNativeBackpropInput Dilation2D DisableCopyOnRead Div
DivNoNan Einsum Elu Empty EnsureShape Enter Equal Erf Erfc EuclideanNorm Exit Exp ExpandDims Expm1
ExtractImagePatches Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3
FusedPadConv2D FusedResizeAndPadConv2D Gather GatherNd GatherV2 Greater GreaterEqual Identity IdentityN If
Imag InTopKV2 Inv InvertPermutation IsFinite IsInf IsNan L2Loss LRN LeakyRelu Less LessEqual Lgamma
LinSpace Log Log1p LogSoftmax LogicalAnd LogicalNot LogicalOr LoopCond MatMul MatrixBandPart MatrixDiag
MatrixDiagPartV3 MatrixDiagV3 Max MaxPool MaxPool3D MaxPoolV2 Maximum Mean Merge Min Minimum MirrorPad Mod
Mul MulNoNan Multinomial Neg NextIteration NoOp NotEqual OneHot OnesLike Pack Pad PadV2 PartitionedCall
Placeholder PlaceholderWithDefault Pow PreventGradient Prod RandomStandardNormal RandomUniform
RandomUniformInt Range Rank ReadVariableOp Real RealDiv Reciprocal Relu Relu6 Reshape ResizeArea
ResizeBicubic ResizeBilinear ResizeNearestNeighbor ReverseV2 Rint Round Rsqrt ScaleAndTranslate Select
SelectV2 Selu Shape ShapeN Sigmoid Sign Sin Sinh Size Slice Snapshot Softmax Softplus Softsign
SpaceToBatchND SpaceToDepth Split SplitV Sqrt Square SquaredDifference Squeeze StatefulPartitionedCall
StatelessIf StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg StatelessRandomNormalV2
StatelessRandomUniformFullIntV2 StatelessRandomUniformIntV2 StatelessRandomUniformV2
StatelessTruncatedNormalV2 StatelessWhile StopGradient StridedSlice Sub Sum Switch Tan Tanh TensorScatterAdd
TensorScatterUpdate Tile TopKV2 Transpose TruncateDiv TruncatedNormal Unpack VarHandleOp VarIsInitializedOp
Where While Xdivy Xlog1py ZerosLike
""".split())
#: What ``tf.saved_model.save`` puts in its own ``_traced_save``/``_traced_restore`` functions:
#: allowed in functions that no model function reaches (TensorFlow 2's loader never calls them).
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
                            "StaticRegexFullMatch"})
#: Attributes that name a function an operation calls (calls, conditionals, loops).
_FUNCTION_ATTRS = ("f", "then_branch", "else_branch", "cond", "body", "branches")


def check_folder(folder: Path, name: str) -> tuple[Any, list, Any, WeightsSummary]:
    """(the root model's config, the other objects' configs, the training config or None, the stored
    weights) of a Keras 2 SavedModel folder; UnsafeModelError or ModelLoadError with one line otherwise."""
    graph = _read(folder / "saved_model.pb", MAX_GRAPH_BYTES, name, "saved_model.pb")
    if graph is None:
        raise ModelLoadError(f"{name} is a SavedModel folder in text form (saved_model.pbtxt); "
                             "Grad-CAM Desktop opens the binary saved_model.pb that model.save() writes.")
    saved = _parse_saved_model(graph, name)
    for meta_graph in saved.meta_graphs:
        check_operations(meta_graph, name)
    metadata_path = folder / "keras_metadata.pb"
    if not metadata_path.is_file():
        raise ModelLoadError(
            f"{name} is a TensorFlow SavedModel without Keras metadata (exported for serving: Keras 3 "
            "model.export(), a tf.Module or a TensorFlow Hub model), so its layers cannot be seen and "
            "Grad-CAM needs a layer. Open the .keras/.h5 file or the model.save() folder it was exported "
            "from.")
    root, others = _keras_metadata(_read(metadata_path, MAX_METADATA_BYTES, name, "keras_metadata.pb"), name)
    config = {"class_name": root.get("class_name"), "config": root.get("config")}
    if not isinstance(config["config"], dict):
        raise ModelLoadError(f"{name} is a SavedModel whose Keras metadata has no model config "
                             "(a subclassed model); Grad-CAM Desktop needs a Functional or Sequential model.")
    return config, others, root.get("training_config"), _stored_weights(folder, name)


def check_operations(meta_graph: Any, name: str) -> None:
    """Refuse a graph with an operation outside the allowlist, naming it and its function."""
    library = {function.signature.name: function for function in meta_graph.graph_def.library.function}
    model_functions = set(meta_graph.object_graph_def.concrete_functions)
    reachable = _reachable(model_functions, library)
    for node in meta_graph.graph_def.node:
        _check_node(node, "the main graph", library, name, allowed=COMPUTE_OPS)
    for function_name, function in library.items():
        allowed = COMPUTE_OPS if function_name in reachable else COMPUTE_OPS | CHECKPOINT_OPS
        for node in function.node_def:
            _check_node(node, f"function '{function_name}'", library, name, allowed=allowed)


def _check_node(node: Any, where: str, library: dict, name: str, *, allowed: frozenset[str]) -> None:
    if node.op not in allowed:
        what = "a file or Python operation" if node.op not in COMPUTE_OPS | CHECKPOINT_OPS else \
            "a checkpoint operation that the model's own functions may not run"
        raise UnsafeModelError(f"Refused {name}: its graph runs the TensorFlow operation '{node.op}' "
                               f"({what}, not model math) in {where}.")
    for called in _called_functions(node):
        if called not in library:
            raise UnsafeModelError(f"Refused {name}: {where} calls '{called}', a function that is not "
                                   "in the file.")


def _called_functions(node: Any) -> Iterable[str]:
    for key in _FUNCTION_ATTRS:
        if key not in node.attr:
            continue
        value = node.attr[key]
        if value.HasField("func"):
            yield value.func.name
        elif value.HasField("list"):
            yield from (func.name for func in value.list.func)


def _reachable(start: set[str], library: dict) -> set[str]:
    seen, stack = set(), [name for name in start if name in library]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in library[current].node_def:
            stack.extend(called for called in _called_functions(node) if called in library)
    return seen


def _read(path: Path, limit: int, name: str, what: str) -> bytes | None:
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > limit:
            raise UnsafeModelError(f"Refused {name}: its {what} is larger than {limit // 1024**2} MB.")
        return path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None


def _parse_saved_model(data: bytes, name: str) -> Any:
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError):
        raise ModelLoadError(f"{name} is not a valid TensorFlow SavedModel (saved_model.pb is damaged).") from None
    if not saved.meta_graphs:
        raise ModelLoadError(f"{name} is not a valid TensorFlow SavedModel (it holds no graph).")
    return saved


def _keras_metadata(data: bytes | None, name: str) -> tuple[dict, list]:
    """The root object's metadata record and every other object's (class name and config)."""
    from google.protobuf.message import DecodeError

    from .keras2 import tf_keras

    tf_keras()
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(data or b"")
        records = [(node.node_path, json.loads(node.metadata)) for node in metadata.nodes]
    except (DecodeError, RecursionError, ValueError):
        raise ModelLoadError(f"{name} is not a valid Keras SavedModel (keras_metadata.pb is damaged).") from None
    root = next((record for path, record in records if path == "root"), None)
    if not isinstance(root, dict):
        raise ModelLoadError(f"{name} is not a valid Keras SavedModel (its Keras metadata has no model).")
    others = [{"class_name": record.get("class_name"), "config": record.get("config")}
              for path, record in records if path != "root" and isinstance(record, dict)
              and isinstance(record.get("class_name"), str)]
    return root, others


def _stored_weights(folder: Path, name: str) -> WeightsSummary:
    """Sizes the checkpoint index declares and the bytes its data files hold (no data read)."""
    import tensorflow as tf

    index = folder / "variables" / "variables.index"
    if not index.is_file():
        raise ModelLoadError(f"{name} is a SavedModel without its variables (variables/variables.index).")
    if index.stat().st_size > MAX_METADATA_BYTES:
        raise UnsafeModelError(f"Refused {name}: its variables index is larger than "
                               f"{MAX_METADATA_BYTES // 1024**2} MB.")
    try:
        reader = tf.train.load_checkpoint(str(folder / "variables" / "variables"))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError, RuntimeError):
        raise ModelLoadError(f"{name} has a damaged variables checkpoint.") from None
    declared = sum(math.prod(shape) * max(1, dtypes[key].size) for key, shape in shapes.items())
    stored = sum(part.stat().st_size for part in (folder / "variables").glob("variables.data-*"))
    return WeightsSummary(datasets=len(shapes), declared_bytes=declared, stored_bytes=stored, objects=len(shapes))
