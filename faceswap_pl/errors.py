"""User-facing errors: each carries one sentence naming the thing and the fix.

The CLI prints ``str(error)`` without a traceback for every subclass of :class:`FaceSwapError`.
"""


class FaceSwapError(Exception):
    """Base class of the failures a user can cause and fix."""


class ModelNotFetchedError(FaceSwapError):
    """A zoo model is not in the local cache."""


class FetchError(FaceSwapError):
    """A zoo carrier could not be downloaded or did not verify."""


class ChecksumError(FetchError):
    """A file's sha256 differs from the registry's."""


class CheckpointMismatchError(FaceSwapError):
    """A checkpoint's keys or shapes do not match the module it is loaded into."""


class UnknownNameError(FaceSwapError):
    """A registry lookup with a name that is not registered."""


class CheckpointNotFoundError(FaceSwapError, FileNotFoundError):
    """The checkpoint path does not exist or is not a file."""


class CheckpointReadError(FaceSwapError):
    """The checkpoint exists but cannot be read as weights (corrupt, truncated, wrong format)."""


class UnsafeCheckpointError(CheckpointReadError):
    """The checkpoint is a pickle that would import and run code; refused for safety."""


class ModelFileError(FaceSwapError):
    """A user-supplied model file (or model directory) is missing, unreadable or of the wrong kind."""


class ModelOptionError(FaceSwapError, ValueError):
    """A model option (image size, width, block count, norm, ...) outside its valid choices."""


class InputShapeError(FaceSwapError, ValueError):
    """A tensor given to a model has a shape the model was not built for."""


class NcnnModelError(CheckpointMismatchError):
    """An ncnn param/bin pair is malformed or is not the expected RRDBNet graph."""


class UnsupportedTFLiteOpError(FaceSwapError):
    """The TFLite graph contains an op (or op option) this importer does not implement."""


class MediaError(FaceSwapError):
    """An input image or video cannot be read, or an output cannot be written."""
