"""Test-wide settings: no display, quiet TensorFlow, no blocking dialogs."""

import os

# Set before Qt or TensorFlow are imported anywhere.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADCAM_DESKTOP_NO_DIALOGS", "1")
