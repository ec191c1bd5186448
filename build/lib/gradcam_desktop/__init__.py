"""Grad-CAM Desktop: see where a Keras image classifier looks."""

__version__ = "0.1.0"
