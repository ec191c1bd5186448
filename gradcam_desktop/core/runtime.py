"""Import TensorFlow without its C++ start-up chatter on stderr.

TensorFlow's native libraries print "oneDNN custom operations are on", "Could not find cuda
drivers" and absl's "WARNING: All log messages before absl::InitializeLog()" to file
descriptor 2 while they load, before ``TF_CPP_MIN_LOG_LEVEL`` can take effect. Users of the CLI
were promised one plain line on stderr per error, so the import runs with fd 2 pointed at
/dev/null. Python exceptions from the import are raised after stderr is restored.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    """Import and return TensorFlow with native start-up logs silenced."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow
                import keras  # noqa: F401 - loads the same native libraries; keep it quiet too
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
    return tensorflow
