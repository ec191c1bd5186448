"""Data shipped with Grad-CAM Desktop (demo model, labels, icons); read with importlib.resources."""
