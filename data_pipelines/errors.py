"""User-facing errors of the dataset builder (one sentence each; the CLI prints them, exit code 2)."""

from faceswap_pl.errors import FaceSwapError


class DatasetInputError(FaceSwapError):
    """An input folder is missing, empty, holds nothing usable, or every input in it was skipped."""


class OutputDirError(FaceSwapError):
    """The output folder cannot be created or written to."""
