"""Typed errors whose ``str()`` is one plain-language line for the user (what failed, what to do)."""

import re


class GradCamError(Exception):
    """Base of every error the CLI and the window show to users as one line."""


class ModelLoadError(GradCamError):
    """The model file, demo or zoo model could not be opened."""


class UnsafeModelError(ModelLoadError):
    """The model file contains code (Lambda, custom modules, ...) and was refused before loading.

    ``trustable``: trusting the file (--trust-model, "Trust this file") would let it open, i.e.
    the only objection is Python code stored in the file.
    """

    def __init__(self, message: str = "", *, trustable: bool = False):
        super().__init__(message)
        self.trustable = trustable


class ZooDownloadError(ModelLoadError):
    """Zoo weights are not cached and could not be downloaded."""


class ImageLoadError(GradCamError):
    """The image could not be read or is too large."""


class LayerError(GradCamError):
    """Unknown or non-eligible layer, or a model with no eligible layer."""


class ClassSelectionError(GradCamError):
    """Class index out of range or unknown class name."""


class MethodError(GradCamError):
    """Unknown CAM method, or a combination of options that makes no sense."""


class OutputError(GradCamError):
    """A result could not be written."""


class LabelError(GradCamError):
    """Labelled pictures (a folder of class subfolders, a path,label CSV) could not be read."""


# ---------------------------------------------------------------- messages from foreign errors
# Keras and TensorFlow errors are long: wrapped "could not be deserialized" texts with the
# whole config inside, "in user code:" stacks of source lines. Users get the one line that
# says what went wrong. Text only: this module stays free of Keras and TensorFlow.

_WRAPPER_MARK = "Exception encountered: "
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Keras highlights the reason in terminals
_NOISE = ("Exception encountered when calling", "in user code:", "File \"", "Arguments received",
          "Traceback", "Call arguments received", "•", "Full object config", "config=")
_ENGINE_PACKAGES = ("keras", "tensorflow", "tf_keras", "h5py", "jax", "keras_hub")
#: Keras' and KerasHub's safe-mode refusals: "Requested the <what>. This carries a potential risk of
#: <risk> ... pass `safe_mode=False` ...". That advice is for developers; users get what happened.
_SAFE_MODE_ADVICE = re.compile(r"safe_mode=False|enable_unsafe_deserialization")
_SAFE_MODE_WHAT = re.compile(r"Requested the (.+?)\.\s+This carries", re.S)
_SAFE_MODE_FILE = re.compile(r"(\w+ file): '([^']*)'")
#: Python's own words for a structure that is not what the code expected (a list where a dict
#: belongs, a number where a name belongs): in a model's config, a damaged or crafted file.
_SLIP_TYPES = (KeyError, IndexError, AttributeError)
_SLIP_TEXT = re.compile(r"indices must be integers|is not subscriptable|object is not iterable|unhashable type|"
                        r"argument after \*\*? must be|object is not callable|cannot be interpreted as an integer|"
                        r"'NoneType' object|object has no attribute")


def plain_reason(error: BaseException, limit: int = 200, _depth: int = 0) -> str:
    """The first meaningful line of a Keras/TensorFlow error message, at most ``limit`` chars.

    Keras wraps inner errors ("<class Functional> could not be deserialized properly ...
    Exception encountered: <the real reason>"), TensorFlow prefixes "in user code:" and a
    stack of source lines; the real reason is the innermost text. Three kinds of reason are
    put in words instead: Keras' safe-mode refusals (their advice to pass safe_mode=False is
    not for users), Python's own errors about the shape of data ("list indices must be
    integers", a bare KeyError) and recursion limits, both of which a malformed config causes.
    """
    if _depth == 0 and (worded := _worded_reason(error)) is not None:
        return worded  # our own words, of bounded length
    text = _ANSI.sub("", str(error))
    if _WRAPPER_MARK in text:
        text = text.rsplit(_WRAPPER_MARK, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "in user code:" in text:  # the error itself follows the last "SomeError: ..." line
        raised = [i for i, line in enumerate(lines) if _is_raise_line(line)]
        if raised:
            lines = [lines[raised[-1]].split(": ", 1)[1], *lines[raised[-1] + 1:]]
    meaningful = [line for line in lines
                  if not line.startswith(_NOISE) and not line.startswith(("return ", "raise "))]
    if not meaningful and error.__context__ is not None and _depth < 8:
        return plain_reason(error.__context__, limit, _depth + 1)
    reason = meaningful[0] if meaningful else type(error).__name__
    reason = reason.rstrip(".")
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _chain(error: BaseException) -> list[BaseException]:
    """The error and the ones it was raised from or during (at most 9)."""
    found = [error]
    while len(found) < 9:
        inner = found[-1].__cause__ or found[-1].__context__
        if inner is None or inner in found:
            break
        found.append(inner)
    return found


def _worded_reason(error: BaseException) -> str | None:
    """A plain reason for a safe-mode refusal, a recursion limit or a Python slip; else None."""
    chain = _chain(error)
    texts = [_ANSI.sub("", str(e)) for e in chain]
    advice = next((t for t in texts if _SAFE_MODE_ADVICE.search(t)), None)
    if advice is not None:
        return _safe_mode_reason(advice)
    if any(isinstance(e, RecursionError) for e in chain) \
            or any("maximum recursion depth" in t for t in texts):
        return ("its config nests objects deeper than Keras can follow, which only a damaged or crafted "
                "file does; open the model as Keras saved it")
    reason = plain_reason(error, _depth=1)
    slip = next((e for e in chain if isinstance(e, _SLIP_TYPES)), None)
    # Only when the slip is what would be shown: a KeyError while handling another error is not.
    if slip is not None and reason in _ANSI.sub("", str(slip)) or _SLIP_TEXT.search(reason):
        kind = type(slip).__name__ if slip is not None else type(error).__name__
        return (f"its config is malformed (Keras stopped on a Python {kind}), as in a damaged or "
                "hand-edited file; open the model as Keras saved it")
    return None


def _safe_mode_reason(text: str) -> str:
    what = _SAFE_MODE_WHAT.search(text)
    requested = " ".join(what.group(1).split()) if what else "a part Keras' safe mode blocks"
    requested = requested.replace("`", "")
    path = _SAFE_MODE_FILE.search(text)
    if path is not None or "file" in requested:
        name = path.group(2) if path is not None else ""
        name = name if len(name) <= 80 else name[:79] + "…"
        shown = f" ({path.group(1)} '{name}')" if path is not None else ""
        return (f"it asks Keras to read a file outside the model{shown}, which Grad-CAM Desktop "
                "never allows, trusted or not; only a model that keeps its files inside itself opens")
    return (f"Keras' safe mode refused the {requested}, which could run code; Grad-CAM Desktop "
            "does not switch safe mode off for it (--trust-model allows only Lambda code stored in the file)")


def _is_raise_line(line: str) -> bool:
    head, sep, _ = line.partition(": ")
    return bool(sep) and head.isidentifier() and head.endswith(("Error", "Exception"))


def unexpected_message(error: BaseException) -> str:
    """One line for an error no typed GradCamError covered, for the CLI and the window.

    An error raised while Keras or TensorFlow ran the model (shape mismatch inside a layer,
    an op that does not fit the input, ...) is the model's, not the program's: it reads
    "This model could not be run on an image: <reason>". Anything else stays "unexpected".
    """
    if _from_engine(error):
        return f"This model could not be run on an image: {plain_reason(error)}."
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"unexpected {type(error).__name__}: {first}".rstrip(": ")


def _from_engine(error: BaseException) -> bool:
    if "in user code:" in str(error):
        return True
    if type(error).__module__.split(".")[0] in _ENGINE_PACKAGES:
        return True
    tb = error.__traceback__
    while tb is not None:
        parts = tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/")
        if "site-packages" in parts and any(p in _ENGINE_PACKAGES for p in parts):
            return True
        tb = tb.tb_next
    return False
