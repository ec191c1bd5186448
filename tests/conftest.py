"""Test-wide settings: no display, quiet TensorFlow, no blocking dialogs."""

import os

# Set before Qt or TensorFlow are imported anywhere.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADCAM_DESKTOP_NO_DIALOGS", "1")
# A closed window parks its engine process for the next test's window (session.host.park): one
# TensorFlow import for the suite's ~130 windows instead of one each (about 4 s apiece).
os.environ.setdefault("GRADCAM_DESKTOP_REUSE_ENGINE", "1")
