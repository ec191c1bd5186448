"""KerasHub (the optional ``[hub]`` extra): what loading its models needs beyond the allowlist."""

from __future__ import annotations

from typing import Any

from . import allowlist


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
