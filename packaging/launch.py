"""The bundle's entry script: the same main() as the ``gradcam-desktop`` command."""

import multiprocessing
import sys

from gradcam_desktop.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen app re-executes itself for child processes (Windows, macOS)
    sys.exit(main())
