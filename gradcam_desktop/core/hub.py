"""KerasHub (the optional ``[hub]`` extra): what loading its models needs beyond the allowlist."""

from __future__ import annotations

from typing import Any

from . import allowlist

#: Arguments of KerasHub classes that read a file when given a string (keras_hub 0.32's tokenizers:
#: Keras' safe mode stops some of them, not all, and none once trusted Lambda code switches it off).
#: The scanner refuses a string in any of them whatever the user trusts (scan._check_file_arguments).
FILE_ARGUMENTS = {
    "proto": "SentencePieceTokenizer and its subclasses (Gemma, T5, ALBERT, …) open a path given as proto",
    "spm_proto": "another name a SentencePiece proto goes by; refused in case a KerasHub version reads it",
    "merges": "BytePairTokenizer and its subclasses (GPT-2, CLIP, Whisper, …) read a merges path",
    "vocabulary": "WordPiece, BytePair and PARSeq tokenizers read a vocabulary path (PARSeq even in safe mode)",
    "special_tokens": "WhisperTokenizer reads a JSON file given as special_tokens, even in safe mode",
    "language_tokens": "WhisperTokenizer reads a JSON file given as language_tokens, even in safe mode",
}
#: SentencePieceTokenizer takes a proto string longer than this that decodes as base64 as the proto's
#: bytes, not as a path (its own test, repeated in is_inline_proto).
_INLINE_PROTO_CHARS = 2048


def is_inline_proto(key: str, value: str) -> bool:
    """True for a ``proto`` string KerasHub decodes as data (base64) rather than opens as a file."""
    if key != "proto" or len(value) <= _INLINE_PROTO_CHARS:
        return False
    import base64
    import binascii

    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def without_task_compile(config: Any) -> None:
    """Make every KerasHub Task in ``config`` (an ImageClassifier, …) skip ``compile()`` on build.

    A Task compiles itself in ``__init__`` (a default Adam optimizer, whose variables Keras
    refuses to create inside the stateless scope where footprint.py builds configs abstractly).
    Grad-CAM never trains, so the copy it measures is built uncompiled; edits ``config`` in place.
    """
    nodes = [node for node in _dicts(config) if isinstance(node.get("registered_name"), str)
             and node["registered_name"].startswith(allowlist.HUB_PACKAGE + ">") and isinstance(node.get("config"), dict)]
    if not nodes or not allowlist.hub_installed():
        return  # no KerasHub object: keras_hub (seconds to import) stays unimported
    import keras_hub
    from keras.src.saving import object_registration

    for node in nodes:
        found = object_registration.get_registered_object(node["registered_name"])
        if isinstance(found, type) and issubclass(found, keras_hub.models.Task):
            node["config"]["compile"] = False


def _dicts(config: Any) -> list[dict]:
    found, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
    return found
