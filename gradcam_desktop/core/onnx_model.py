"""An ONNX classifier, checked with the ``onnx`` parser before ONNX Runtime is given it.

ONNX Runtime reads what the file tells it to: tensors kept in other files (``external_data``
with a ``location``, an ``offset`` and a ``length``; the special location ``*/_ORT_MEM_ADDR_/*``
even makes it read process memory), and operators from any domain a plugin library registered.
So the file is parsed first without loading external data, and refused (UnsafeModelError) when:

1. a tensor's external data is not a file inside the model's folder (absolute paths, ``..``,
   a symlink out, ORT's memory addresses) or holds fewer bytes than the tensor's shape and type
   declare; an inline tensor's data must match its declared size too, and all of them together
   must fit in 4 GB and in a share of this machine's free memory;
2. a node's operator comes from a domain other than ONNX's own (``""``/``ai.onnx``,
   ``ai.onnx.ml``) and ONNX Runtime's built-in contrib operators (``com.microsoft``: written by
   ONNX Runtime's own optimizer and quantization tools, e.g. QLinearAdd, FusedConv; compiled into
   the runtime, tensor math only, and nothing loads a library for them). Any other domain is a
   plugin's (onnxruntime-extensions, a company's custom kernels), which this app never registers.
   Functions the model defines itself (FunctionProto) may carry their own domain: ONNX Runtime
   inlines them, so their bodies are checked like the graph (no recursion) and a node may call
   them. Operator-set imports alone are not judged: kernels are looked up for nodes only, and
   exporters leave imports of domains whose functions they inlined (PyTorch's dynamo exporter).

Then ONNX Runtime gets the very bytes that were checked (not the path), with the model's folder
for its external data, the CPU provider only, and a bounded thread pool that does not spin.
A file that is not ONNX, or is truncated, is a one-line ModelLoadError; one written by a newer
ONNX (IR version, opset) than the installed ONNX Runtime reads says so.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from .blackbox import RUNTIME_THREADS, Runtime, TensorInfo, read_model_file
from .errors import ModelLoadError, UnsafeModelError, plain_reason
from .footprint import available_memory, human
from .safety import MEMORY_SHARE

#: Domains whose operators ONNX Runtime's CPU provider implements itself (see the module doc).
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
MAX_TENSOR_BYTES = 4 * 1024**3        # all initializers and constants together
MAX_GRAPH_DEPTH = 64                  # subgraphs (If/Loop/Scan bodies) inside subgraphs
MAX_NODES = 2_000_000
ORT_MEMORY_LOCATION = "_ORT_MEM_ADDR_"
#: Operators that pass their input through unchanged in value: looked through when deciding
#: whether an output comes from a Softmax.
_PASS_THROUGH = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"})


@dataclass
class CheckedOnnx:
    data: bytes                 # the file's bytes, exactly as checked
    folder: Path                # where its external data lives
    external_files: list[Path]  # files holding external data
    tensor_bytes: int           # declared bytes of every initializer and constant
    softmax_outputs: set[str]   # graph outputs produced by a Softmax


def check_onnx(path: Path, name: str) -> CheckedOnnx:
    """Parse and check an .onnx file without loading external data; raise one-line errors."""
    data = read_model_file(path, name)
    model = _parse(data, name)
    checker = _Checker(name, path.parent, model)
    checker.check()
    return CheckedOnnx(data, path.parent, sorted(checker.external_files), checker.total, _softmax_outputs(model.graph))


def _parse(data: bytes, name: str) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    not_onnx = f"{name} is not an ONNX model (damaged, truncated or another kind of file)."
    try:
        model = onnx.load(io.BytesIO(data), load_external_data=False)
    except (DecodeError, RecursionError, ValueError, TypeError, RuntimeError):
        raise ModelLoadError(not_onnx) from None
    if model.ir_version < 3 or not model.opset_import or not model.graph.node or not model.graph.output:
        raise ModelLoadError(not_onnx)
    if model.ir_version > onnx.IR_VERSION + 4:  # a garbage field, not a future release
        raise ModelLoadError(not_onnx)
    return model


class _Checker:
    """Walks the graph, its subgraphs and the model's functions: domains and tensor sizes."""

    def __init__(self, name: str, folder: Path, model: Any):
        self.name, self.folder, self.model = name, folder, model
        self.folder_real = os.path.realpath(folder)
        self.total = 0
        self.nodes = 0
        self.external_files: set[Path] = set()
        self.functions = {(f.domain, f.name): f for f in model.functions}

    def check(self) -> None:
        if os.environ.get("ORT_LOAD_CONFIG_FROM_MODEL") == "1" and \
                any(prop.key == "ort_config" for prop in self.model.metadata_props):
            raise UnsafeModelError(f"Refused {self.name}: it carries ONNX Runtime session settings (ort_config), "
                                   "which this environment would apply.")
        self._check_functions()
        self._graph(self.model.graph, "the graph", 0)
        budget = int(available_memory() * MEMORY_SHARE)
        if self.total > MAX_TENSOR_BYTES:
            raise ModelLoadError(f"{self.name} declares {human(self.total)} of weights, more than Grad-CAM Desktop "
                                 f"opens ({human(MAX_TENSOR_BYTES)}).")
        if self.total > budget:
            raise ModelLoadError(f"{self.name} needs about {human(self.total)} of memory to load (its weights); this "
                                 f"computer has about {human(budget)} to spare. Refusing to load it.")

    def _check_functions(self) -> None:
        calls: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for key, function in self.functions.items():
            where = f"function '{function.name}'"
            calls[key] = set()
            for node in function.node:
                self._node(node, where, 1)
                if (node.domain, node.op_type) in self.functions:
                    calls[key].add((node.domain, node.op_type))
        # ONNX Runtime inlines functions: one that calls itself, directly or not, never ends.
        state: dict[tuple[str, str], int] = {}
        for start in calls:
            stack = [(start, iter(sorted(calls[start])))]
            if state.get(start):
                continue
            state[start] = 1
            while stack:
                current, pending = stack[-1]
                callee = next(pending, None)
                if callee is None:
                    state[current] = 2
                    stack.pop()
                elif state.get(callee) == 1:
                    raise UnsafeModelError(f"Refused {self.name}: its function '{callee[1]}' calls itself, which "
                                           "never ends when ONNX Runtime expands it.")
                elif not state.get(callee):
                    state[callee] = 1
                    stack.append((callee, iter(sorted(calls[callee]))))

    def _graph(self, graph: Any, where: str, depth: int) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise UnsafeModelError(f"Refused {self.name}: its subgraphs nest more than {MAX_GRAPH_DEPTH} deep.")
        for tensor in graph.initializer:
            self._tensor(tensor, where)
        for sparse in graph.sparse_initializer:
            self._tensor(sparse.values, where)
            self._tensor(sparse.indices, where)
        for node in graph.node:
            self._node(node, where, depth)

    def _node(self, node: Any, where: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UnsafeModelError(f"Refused {self.name}: it has more than {MAX_NODES} operators.")
        domain = node.domain or ""
        if domain not in ALLOWED_DOMAINS and (domain, node.op_type) not in self.functions:
            label = f" ('{node.name}')" if node.name else ""
            raise UnsafeModelError(f"Refused {self.name}: its node{label} in {where} uses the operator "
                                   f"'{node.op_type}' from the custom domain '{domain}', which is neither ONNX nor "
                                   "ONNX Runtime's own; such operators come from plugin libraries, which Grad-CAM "
                                   "Desktop does not load.")
        inside = f"{where}, node '{node.name or node.op_type}'"
        for attribute in node.attribute:
            if attribute.HasField("t"):
                self._tensor(attribute.t, inside)
            for tensor in attribute.tensors:
                self._tensor(tensor, inside)
            for sparse in [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []:
                self._tensor(sparse.values, inside)
                self._tensor(sparse.indices, inside)
            for sparse in attribute.sparse_tensors:
                self._tensor(sparse.values, inside)
                self._tensor(sparse.indices, inside)
            if attribute.HasField("g"):
                self._graph(attribute.g, f"a subgraph of {inside}", depth + 1)
            for graph in attribute.graphs:
                self._graph(graph, f"a subgraph of {inside}", depth + 1)

    def _tensor(self, tensor: Any, where: str) -> None:
        from onnx import TensorProto

        label = f"'{tensor.name}'" if tensor.name else f"a tensor in {where}"
        dims = list(tensor.dims)
        if any(side < 0 for side in dims):
            raise UnsafeModelError(f"Refused {self.name}: tensor {label} declares a negative size {dims}.")
        count = math.prod(dims)
        bits = _bits(tensor.data_type)
        if tensor.data_type == TensorProto.UNDEFINED:
            raise ModelLoadError(f"{self.name} is a damaged ONNX model (tensor {label} has no type).")
        if bits is None:
            raise ModelLoadError(f"{self.name} stores tensor {label} in a type (code {tensor.data_type}) this ONNX "
                                 "version does not know: it was written by a newer ONNX.")
        declared = math.ceil(count * bits / 8)
        if tensor.data_location == TensorProto.EXTERNAL:
            self._external(tensor, label, declared)
        elif tensor.data_type == TensorProto.STRING:
            if len(tensor.string_data) != count:
                raise UnsafeModelError(f"Refused {self.name}: tensor {label} declares {count} strings but holds "
                                       f"{len(tensor.string_data)}.")
            declared = sum(len(s) for s in tensor.string_data)
        elif tensor.HasField("raw_data") or not _typed_count(tensor):
            if len(tensor.raw_data) != declared:
                raise UnsafeModelError(f"Refused {self.name}: tensor {label} declares {human(declared)} "
                                       f"(shape {dims}) but holds {human(len(tensor.raw_data))}; size and data do "
                                       "not match.")
        else:
            held = _typed_count(tensor)
            if held not in {count, 2 * count, math.ceil(count / 2), math.ceil(count / 4)}:
                raise UnsafeModelError(f"Refused {self.name}: tensor {label} declares {count} values (shape {dims}) "
                                       f"but holds {held}; size and data do not match.")
        self.total += declared

    def _external(self, tensor: Any, label: str, declared: int) -> None:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        shown = location if len(location) <= 80 else location[:79] + "…"
        outside = UnsafeModelError(f"Refused {self.name}: tensor {label} reads its data from '{shown}', outside the "
                                   "model's folder; only data files next to the model are read.")
        posix = PurePosixPath(location.replace("\\", "/"))
        windows = PureWindowsPath(location)
        if not location or ORT_MEMORY_LOCATION in location:
            if ORT_MEMORY_LOCATION in location:
                raise UnsafeModelError(f"Refused {self.name}: tensor {label} asks ONNX Runtime to read its data "
                                       "from the program's memory, which only a crafted file does.")
            raise UnsafeModelError(f"Refused {self.name}: tensor {label} keeps its data in another file but does "
                                   "not name it.")
        if posix.is_absolute() or windows.is_absolute() or windows.drive or ":" in location \
                or ".." in posix.parts or "\0" in location:
            raise outside
        target = os.path.realpath(os.path.join(self.folder, *posix.parts))
        if os.path.commonpath([target, self.folder_real]) != self.folder_real:
            raise outside  # a symlink out of the folder
        try:
            size = os.stat(target).st_size if os.path.isfile(target) else None
        except OSError:
            size = None
        if size is None:
            raise ModelLoadError(f"{self.name} keeps tensor {label} in '{shown}', which is missing next to it; copy "
                                 "the model's data files with it.")
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else size - offset
        except ValueError:
            raise UnsafeModelError(f"Refused {self.name}: tensor {label} has a malformed external-data offset "
                                   "or length.") from None
        if offset < 0 or length < 0:
            raise UnsafeModelError(f"Refused {self.name}: tensor {label} has a negative external-data offset "
                                   "or length.")
        if offset + declared > size or offset + length > size:
            raise UnsafeModelError(f"Refused {self.name}: tensor {label} declares {human(max(declared, length))} "
                                   f"in '{shown}' but that file holds only {human(max(0, size - offset))} there.")
        if "length" in entries and length != declared:
            raise UnsafeModelError(f"Refused {self.name}: tensor {label} declares {human(declared)} but its data in "
                                   f"'{shown}' is {human(length)} long; size and data do not match.")
        self.external_files.add(Path(target))


def _bits(data_type: int) -> int | None:
    """Bits per element of an ONNX tensor type (strings: 0, sized separately); None if unknown."""
    from onnx import TensorProto, helper

    packed = {getattr(TensorProto, name, None): width for name, width in
              (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))}
    if data_type in packed:
        return packed[data_type]
    if data_type == TensorProto.STRING:
        return 0
    if data_type == TensorProto.UNDEFINED:
        return None
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize) * 8
    except (KeyError, TypeError, ValueError):
        return None


def _typed_count(tensor: Any) -> int:
    return (len(tensor.float_data) + len(tensor.int32_data) + len(tensor.int64_data) + len(tensor.double_data)
            + len(tensor.uint64_data))


def _softmax_outputs(graph: Any) -> set[str]:
    producers = {output: node for node in graph.node for output in node.output}
    found = set()
    for output in graph.output:
        current, steps = output.name, 0
        while current in producers and steps < 16:
            node = producers[current]
            if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
                found.add(output.name)
                break
            if node.op_type not in _PASS_THROUGH or not node.input:
                break
            current, steps = node.input[0], steps + 1
    return found


# ---------------------------------------------------------------- the runtime

_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_SOURCE_LOCATION = re.compile(r"^\S+\.(?:cc|h|cpp|hpp):\d+ .*?\) (?=[A-Z])")
_IR_VERSION = re.compile(r"IR version: (\d+), max supported IR version: (\d+)")
_OPSET = re.compile(r"Opset (\d+) is under development|support for domain (\S+) is till opset (\d+)")


def ort_reason(error: BaseException) -> str:
    """ONNX Runtime's message without its code prefix and C++ source location, as one line."""
    text = _SOURCE_LOCATION.sub("", _ORT_PREFIX.sub("", str(error).strip()))
    reason = plain_reason(RuntimeError(text)) if text else type(error).__name__
    return reason.removeprefix("Fatal error: ")


def _load_error(error: BaseException, name: str) -> ModelLoadError:
    import onnxruntime

    text = str(error)
    version = onnxruntime.__version__
    if isinstance(error, UnicodeDecodeError):  # ONNX Runtime quoted a name that is not UTF-8 text
        return ModelLoadError(f"{name} is a damaged ONNX model (its names are not valid text).")
    if (match := _IR_VERSION.search(text)) is not None:
        return ModelLoadError(f"{name} was written by a newer ONNX (IR version {match.group(1)}) than ONNX Runtime "
                              f"{version} reads (up to {match.group(2)}); update onnxruntime or export the model for "
                              "an older ONNX.")
    if (match := _OPSET.search(text)) is not None:
        return ModelLoadError(f"{name} was written for a newer ONNX operator set than ONNX Runtime {version} "
                              "supports; update onnxruntime or export the model with an older opset.")
    if "is not a registered function/op" in text or "Could not find an implementation" in text:
        return ModelLoadError(f"{name} uses an operator that ONNX Runtime {version} does not have "
                              f"({ort_reason(error)}); it may need a newer onnxruntime.")
    return ModelLoadError(f"Cannot open model {name}: {ort_reason(error)}")


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(uint16)": "uint16", "tensor(int16)": "int16",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(uint32)": "uint32",
              "tensor(uint64)": "uint64", "tensor(bool)": "bool"}


def _info(arg: Any) -> TensorInfo:
    shape = arg.shape
    dims = None if shape is None else tuple(side if isinstance(side, int) and side > 0 else None for side in shape)
    return TensorInfo(name=arg.name, shape=dims, dtype=_ORT_TYPES.get(arg.type, str(arg.type)))


class OnnxRuntime(Runtime):
    format = "onnx"

    def __init__(self, session: Any, checked: CheckedOnnx):
        super().__init__()
        self.session = session
        self.inputs = [_info(arg) for arg in session.get_inputs()]
        self.outputs = [_info(arg) for arg in session.get_outputs()]
        self.extra_files = checked.external_files
        self._softmax = checked.softmax_outputs

    def run(self, x: np.ndarray, output: str) -> np.ndarray:
        return self.session.run([output], {self.inputs[0].name: x})[0]

    def declares_probabilities(self, output: str) -> bool:
        return output in self._softmax


def session_options() -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = RUNTIME_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings about unused initializers are not the user's
    # Idle pool threads sleep instead of spinning: the engine shares the machine with the window.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


#: The one line for an install without the [onnx] extra.
MISSING_EXTRA = ('{name} is an ONNX model; opening it needs the optional ONNX support: '
                 'pip install "gradcam-desktop[onnx]" (the onnx and onnxruntime packages).')


def open_onnx(path: Path, name: str) -> OnnxRuntime:
    """Check ``path`` (check_onnx), then open it in ONNX Runtime on the CPU."""
    try:
        import onnx  # noqa: F401 - only to know whether the extra is installed
        import onnxruntime
    except ImportError:
        raise ModelLoadError(MISSING_EXTRA.format(name=name)) from None
    checked = check_onnx(path, name)
    options = session_options()
    # External data is looked up in the model's folder, which the check above confined it to.
    options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                     str(checked.folder.resolve()))
    try:
        # On a failure ONNX Runtime's Python wrapper prints an "EP Error" banner to stdout and tries
        # again with the same CPU provider: the banner must not reach the engine's stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            session = onnxruntime.InferenceSession(checked.data, sess_options=options,
                                                   providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own (pybind) error types
        raise _load_error(error, name) from None
    checked.data = b""  # the runtime has its own copy
    return OnnxRuntime(session, checked)
