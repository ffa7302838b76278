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
