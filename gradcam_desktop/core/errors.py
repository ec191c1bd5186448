"""Typed errors whose ``str()`` is one plain-language line for the user (what failed, what to do)."""


class GradCamError(Exception):
    """Base of every error the CLI and the window show to users as one line."""


class ModelLoadError(GradCamError):
    """The model file, demo or zoo model could not be opened."""


class UnsafeModelError(ModelLoadError):
    """The model file contains code (Lambda, custom modules, ...) and was refused before loading."""


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
