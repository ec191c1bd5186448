"""A TensorFlow Lite classifier, its operators read from the flatbuffer before an interpreter is made.

A .tflite file lists the operators it runs in ``Model.operator_codes``. Built-in operators are
tensor math compiled into the interpreter; an operator with the code CUSTOM is looked up by name
among kernels someone registered — in particular ``Flex<Op>`` runs any TensorFlow operation
(``FlexReadFile``, ``FlexWriteFile``) where the Flex delegate is linked in (TensorFlow's own pip
package has shipped it). So the file must carry the TFLite identifier ``TFL3``, and a file with a
custom operator is refused (UnsafeModelError naming it) before an interpreter exists. The reader
below is a small bounds-checked flatbuffer parser: every offset is checked against the file.

The interpreter is ``ai_edge_litert``'s when that package is installed, else ``tf.lite.Interpreter``
(TensorFlow 2.21 still ships it, with a deprecation warning on every construction, silenced here),
built from the very bytes that were checked, with a bounded thread count. Quantized (uint8/int8)
inputs and outputs carry a scale and zero point, which blackbox.py applies.
"""

from __future__ import annotations

import math
import re
import struct
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .blackbox import RUNTIME_THREADS, Runtime, TensorInfo, read_model_file
from .errors import GradCamError, ModelLoadError, UnsafeModelError, plain_reason

IDENTIFIER = b"TFL3"
# BuiltinOperator codes (tensorflow/compiler/mlir/lite/schema/schema.fbs).
DEQUANTIZE, RESHAPE, SOFTMAX, CUSTOM, SQUEEZE, DELEGATE, QUANTIZE = 6, 22, 25, 32, 43, 51, 114
_PASS_THROUGH = frozenset({DEQUANTIZE, RESHAPE, SQUEEZE, QUANTIZE})
MAX_OPERATOR_CODES = 10_000
MAX_OPERATORS = 1_000_000


class _Damaged(Exception):
    """An offset or length in the flatbuffer points outside the file."""


class _Table:
    """A flatbuffer table: fields by index, every read bounds-checked."""

    def __init__(self, data: bytes, pos: int):
        self.data = data
        self.pos = pos
        vtable = pos - _read(data, "<i", pos)
        self.vtable = vtable
        self.vtable_size = _read(data, "<H", vtable)
        if self.vtable_size < 4 or vtable + self.vtable_size > len(data):
            raise _Damaged

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry + 2 > self.vtable_size:
            return None
        offset = _read(self.data, "<H", self.vtable + entry)
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int) -> int:
        at = self._field(index)
        return default if at is None else _read(self.data, fmt, at)

    def _indirect(self, index: int) -> int | None:
        at = self._field(index)
        return None if at is None else at + _read(self.data, "<I", at)

    def table(self, index: int) -> _Table | None:
        at = self._indirect(index)
        return None if at is None else _Table(self.data, at)

    def vector(self, index: int, item: int, limit: int) -> tuple[int, int]:
        at = self._indirect(index)
        if at is None:
            return 0, 0
        count = _read(self.data, "<I", at)
        if count > limit or at + 4 + count * item > len(self.data):
            raise _Damaged
        return at + 4, count

    def tables(self, index: int, limit: int) -> list[_Table]:
        start, count = self.vector(index, 4, limit)
        return [_Table(self.data, start + 4 * i + _read(self.data, "<I", start + 4 * i)) for i in range(count)]

    def ints(self, index: int, limit: int = MAX_OPERATORS) -> list[int]:
        start, count = self.vector(index, 4, limit)
        return list(struct.unpack_from(f"<{count}i", self.data, start)) if count else []

    def string(self, index: int) -> str | None:
        start, count = self.vector(index, 1, 1 << 16)
        return None if self._field(index) is None else self.data[start:start + count].decode("utf-8", "replace")


def _read(data: bytes, fmt: str, at: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > len(data):
        raise _Damaged
    return int(struct.unpack_from(fmt, data, at)[0])


def operator_codes(data: bytes) -> list[tuple[int, str | None]]:
    """(builtin code, custom name or None) of every operator code the model lists."""
    model = _Table(data, _read(data, "<I", 0))
    codes = []
    for code in model.tables(1, MAX_OPERATOR_CODES):
        # Codes under 127 are in the old int8 field, newer ones in builtin_code (schema_utils.py).
        builtin = max(code.scalar(0, "<b", 0), code.scalar(3, "<i", 0))
        codes.append((builtin, code.string(1)))
    return codes


#: Bits per element of each TensorType with a fixed size (strings, resources, variants: none).
_TYPE_BITS = {0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 6: 8, 7: 16, 8: 64, 9: 8, 10: 64, 11: 128, 12: 64, 15: 32, 16: 16,
              17: 4, 18: 16, 19: 2, 20: 4}
MAX_TENSORS = 10_000_000
MAX_RANK = 16


def structure_problem(data: bytes, codes: list[tuple[int, str | None]]) -> str | None:
    """Why the graph cannot run as written, or None: an index out of range, a constant whose data is
    not its shape's size, or an operator reading a tensor no earlier operator computed. The
    interpreter trusts these (its verifier checks the flatbuffer's layout only) and crashes on them."""
    model = _Table(data, _read(data, "<I", 0))
    lengths = []
    for buffer in model.tables(4, MAX_TENSORS):
        offset, size = buffer.scalar(1, "<Q", 0), buffer.scalar(2, "<Q", 0)
        if offset > 1:  # a large model keeps its data after the flatbuffer
            if offset + size > len(data):
                return "a weights buffer lies beyond the end of the file"
            lengths.append(size)
        else:
            lengths.append(buffer.vector(0, 1, len(data))[1])
    for number, subgraph in enumerate(model.tables(2, 100_000)):
        tensors = subgraph.tables(0, MAX_TENSORS)
        ready: set[int] = set()
        for index, tensor in enumerate(tensors):
            shape = tensor.ints(0, MAX_RANK)
            if any(side < 0 for side in shape):
                return f"tensor {index} has a negative size"
            slot = tensor.scalar(2, "<I", 0)
            if slot >= max(1, len(lengths)):
                return f"tensor {index} names a weights buffer that does not exist"
            count = math.prod(shape)
            stored = lengths[slot] if slot else 0
            if stored or count == 0 or tensor.scalar(5, "<B", 0):
                ready.add(index)  # a constant, an empty tensor or a variable
            bits = _TYPE_BITS.get(tensor.scalar(1, "<b", 0))
            if stored and bits and tensor.table(6) is None and stored != -(-count * bits // 8):  # dense constants
                return f"tensor {index}'s data is not the size of its shape {shape}"
        in_range = range(len(tensors))
        for index in subgraph.ints(1):
            if index not in in_range:
                return f"an input of subgraph {number} does not exist"
            ready.add(index)
        for position, operator in enumerate(subgraph.tables(3, MAX_OPERATORS)):
            if operator.scalar(0, "<I", 0) >= len(codes):
                return f"operator {position} has no operator code"
            for index in operator.ints(1):
                if index != -1 and index not in ready:  # -1: an optional input left out
                    return (f"operator {position} of subgraph {number} reads tensor {index}, which nothing "
                            "computed before it" if index in in_range else f"operator {position} reads a "
                            "tensor that does not exist")
            for index in [*operator.ints(8), *operator.ints(2)]:  # intermediates, outputs
                if index not in in_range:
                    return f"operator {position} writes a tensor that does not exist"
                ready.add(index)
        for index in subgraph.ints(2):
            if index not in ready:
                return f"an output of subgraph {number} is never computed"
    return None


def _softmax_outputs(data: bytes, codes: list[tuple[int, str | None]]) -> set[int]:
    """Tensor indexes of the main subgraph's outputs that a SOFTMAX produces."""
    model = _Table(data, _read(data, "<I", 0))
    subgraphs = model.tables(2, 100_000)
    if not subgraphs:
        return set()
    main = subgraphs[0]
    producers: dict[int, tuple[int, list[int]]] = {}
    for operator in main.tables(3, MAX_OPERATORS):
        index = operator.scalar(0, "<I", 0)
        builtin = codes[index][0] if index < len(codes) else -1
        for tensor in operator.ints(2):
            producers[tensor] = (builtin, operator.ints(1))
    found = set()
    for output in main.ints(2):
        current, steps = output, 0
        while current in producers and steps < 16:
            builtin, inputs = producers[current]
            if builtin == SOFTMAX:
                found.add(output)
                break
            if builtin not in _PASS_THROUGH or not inputs:
                break
            current, steps = inputs[0], steps + 1
    return found


def check_tflite(path: Path, name: str) -> tuple[bytes, set[int]]:
    """The file's bytes and its softmax outputs, after the identifier and operator checks."""
    data = read_model_file(path, name)
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ModelLoadError(f"{name} is not a TensorFlow Lite model (damaged, or another kind of file).")
    try:
        codes = operator_codes(data)
        softmax = _softmax_outputs(data, codes)
        problem = structure_problem(data, codes)
    except (_Damaged, struct.error, IndexError, OverflowError):
        raise ModelLoadError(f"{name} is not a valid TensorFlow Lite model (damaged or truncated).") from None
    for builtin, custom in codes:
        if builtin == CUSTOM:
            custom = custom or "?"
            if custom.startswith("Flex"):
                raise UnsafeModelError(f"Refused {name}: it runs the TensorFlow operation '{custom[4:]}' through the "
                                       f"Flex delegate (custom operator '{custom}'), which may read or write files; "
                                       "only TensorFlow Lite built-in operators are allowed.")
            raise UnsafeModelError(f"Refused {name}: it uses the custom operator '{custom}', code from outside the "
                                   "file that TensorFlow Lite would look up by name; only built-in operators are "
                                   "allowed.")
        if builtin == DELEGATE:
            raise UnsafeModelError(f"Refused {name}: it contains a delegate operator, which only a running "
                                   "interpreter makes; only built-in operators are allowed.")
    if problem is not None:
        raise ModelLoadError(f"{name} is not a valid TensorFlow Lite model (damaged or crafted: {problem}).")
    return data, softmax


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 - a class
    return Interpreter


_NEWER = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'|Op builtin_code out of range")


def _load_error(error: BaseException, name: str) -> ModelLoadError:
    text = str(error)
    if "not a valid Flatbuffer" in text or isinstance(error, UnicodeDecodeError):
        return ModelLoadError(f"{name} is not a valid TensorFlow Lite model (damaged or truncated).")
    if (match := _NEWER.search(text)) is not None:
        what = f"the operator {match.group(1)} version {match.group(2)}" if match.group(1) else "an operator"
        return ModelLoadError(f"{name} was written by a newer TensorFlow Lite: {what} is unknown to this "
                              "interpreter; update TensorFlow (or ai-edge-litert) or convert it with an older one.")
    return ModelLoadError(f"Cannot open model {name}: {plain_reason(error)}")


def _info(details: dict) -> TensorInfo:
    signature = details.get("shape_signature")
    shape = signature if signature is not None and len(signature) else details["shape"]
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []))
    if scales.size > 1:
        raise ModelLoadError(f"the tensor '{details['name']}' is quantized per channel, which Grad-CAM Desktop "
                             "cannot feed.")
    scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorInfo(name=str(details["name"]), dtype=np.dtype(details["dtype"]).name,
                      shape=tuple(int(s) if s > 0 else None for s in shape),
                      scale=float(scale), zero_point=int(zero_point))


class TfliteRuntime(Runtime):
    format = "tflite"

    def __init__(self, interpreter: Any, softmax: set[int], name: str):
        super().__init__()
        self.interpreter = interpreter
        self._inputs = interpreter.get_input_details()
        self._outputs = interpreter.get_output_details()
        try:
            self.inputs = [_info(d) for d in self._inputs]
            self.outputs = [_info(d) for d in self._outputs]
        except ModelLoadError as error:
            raise ModelLoadError(f"Cannot open model {name}: {error}") from None
        self._index = {d["name"]: d["index"] for d in self._outputs}
        self._softmax = {str(d["name"]) for d in self._outputs if d["index"] in softmax}
        self._lock = threading.Lock()  # an interpreter runs one call at a time
        self._shape: tuple[int, ...] | None = None

    def run(self, x: np.ndarray, output: str) -> np.ndarray:
        interpreter = self.interpreter
        index = self._inputs[0]["index"]
        with self._lock:
            if self._shape != x.shape:
                if tuple(interpreter.get_input_details()[0]["shape"]) != x.shape:
                    # Only sides the model declares dynamic (-1) may change; strict refuses others.
                    interpreter.resize_tensor_input(index, list(x.shape), strict=True)
                interpreter.allocate_tensors()
                self._shape = x.shape
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return np.array(interpreter.get_tensor(self._index[output]))

    def declares_probabilities(self, output: str) -> bool:
        return output in self._softmax


def open_tflite(path: Path, name: str) -> TfliteRuntime:
    """Check ``path`` (check_tflite), then make an interpreter from the checked bytes."""
    data, softmax = check_tflite(path, name)
    try:
        interpreter_class = _interpreter_class()
    except ImportError:
        raise ModelLoadError(f"{name} is a TensorFlow Lite model; opening it needs TensorFlow or the "
                             "ai-edge-litert package.") from None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
            interpreter = interpreter_class(model_content=data, num_threads=RUNTIME_THREADS)
        interpreter.allocate_tensors()
        return TfliteRuntime(interpreter, softmax, name)
    except GradCamError:
        raise
    except Exception as error:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError with C++ text
        raise _load_error(error, name) from None
