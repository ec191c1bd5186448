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
    if not allowlist.hub_installed():
        return
    import keras_hub
    from keras.src.saving import object_registration

    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            registered = node.get("registered_name")
            found = object_registration.get_registered_object(registered) if isinstance(registered, str) \
                and registered.startswith(allowlist.HUB_PACKAGE + ">") else None
            if isinstance(found, type) and issubclass(found, keras_hub.models.Task) \
                    and isinstance(node.get("config"), dict):
                node["config"]["compile"] = False
            stack.extend(node.values())
