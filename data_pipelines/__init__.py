"""Dataset pipelines: build WebDataset face shards from identity folders, videos and the demo media.

* :func:`build_shards` — input folders -> shards + ``manifest.json`` + ``skipped.json``
* :func:`build_demo` — the small offline demo/test dataset (``train/`` and ``val/``)
* :func:`inspect_shards` — counts of a shard folder and a contact sheet of its groups

The shard schema is :mod:`faceswap_pl.data.schema`. Heavy imports (OpenCV, torch) happen inside the
functions, so importing this package is cheap.
"""

from data_pipelines.build import BuildOptionError, build_shards
from data_pipelines.demo import build_demo
from data_pipelines.errors import DatasetInputError, OutputDirError
from data_pipelines.inspection import contact_sheet, inspect_shards

__all__ = ["build_shards", "build_demo", "inspect_shards", "contact_sheet", "BuildOptionError",
           "DatasetInputError", "OutputDirError"]
