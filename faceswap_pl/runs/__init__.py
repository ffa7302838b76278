"""MLflow runs: the store (URIs, a checked client, experiments), run comparisons and their plots.

``store`` is what training and the sweeps need; ``compare`` and ``plots`` serve `faceswap-pl runs` and reports.
This package's own namespace holds only constants, so the command line can name them without importing MLflow.
"""

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
ACCEPTED_URIS = "sqlite:///PATH.db, http(s)://HOST:PORT, file:///DIR or a plain directory path"
MODEL_URI_PREFIXES = ("models:/", "runs:/")


def is_model_uri(text: object) -> bool:
    """True for MLflow's model and run URIs (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/PATH``)."""
    return isinstance(text, str) and text.startswith(MODEL_URI_PREFIXES)
