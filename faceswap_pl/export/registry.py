"""Registering an export in the MLflow model registry (a new version of a named model, alias ``champion``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from faceswap_pl.export.writer import ExportError
from faceswap_pl.files import sha256_of
from faceswap_pl.inference.export_format import CARD_FILE, CHAMPION_ALIAS, CONFIG_FILE
from faceswap_pl.runs.store import get_run, resolve_tracking_uri

EXPORT_EXPERIMENT = "faceswap-pl-exports"  # experiment of the run created by --register without a source run
ARTIFACT_PATH = "export"
MAX_DESCRIPTION = 60_000  # the model card as the version's description, within what MLflow stores

def register_export(out_dir: str | Path, name: str, run_id: str | None = None,
                    tracking_uri: str | None = None) -> dict[str, Any]:
    """Log the export folder as artifact ``export/`` of ``run_id`` (else of a new run in experiment
    ``faceswap-pl-exports``) and register it as a new version of model ``name`` with alias ``champion``.

    Returns ``{"name", "version", "run_id", "source", "tracking_uri"}``.
    """
    uri = resolve_tracking_uri(tracking_uri)
    out = Path(out_dir)
    if not name or not name.strip():
        raise ExportError("--register needs a model name, e.g. --register ghost-unet.")
    if uri.startswith("file:"):
        raise ExportError(f"The MLflow model registry needs a database or server store, not {uri}; pass "
                          f"--tracking-uri sqlite:///mlruns.db (or an http server).")
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if run_id:
            get_run(client, uri, run_id)
        else:
            experiment = client.get_experiment_by_name(EXPORT_EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPORT_EXPERIMENT)
            run = client.create_run(experiment_id, run_name=f"export-{name}",
                                    tags={"faceswap_pl.export": str(out.resolve())})
            run_id = run.info.run_id
            config = json.loads((out / CONFIG_FILE).read_text())
            for key in ("backbone", "num_aad_blocks", "image_size", "width", "id_dim", "identity_encoder"):
                client.log_param(run_id, key, config[key])
            client.set_terminated(run_id)
        client.log_artifacts(run_id, str(out), artifact_path=ARTIFACT_PATH)
        source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="faceswap-pl swap generator (AEI-Net) exports")
        tags = {f"sha256.{p.name}": sha256_of(p) for p in sorted(out.iterdir()) if p.suffix != ".md"}
        card = out / CARD_FILE  # shown on the version's page in MLflow's UI (the files are the run's artifacts)
        description = card.read_text()[:MAX_DESCRIPTION] if card.is_file() else f"faceswap-pl export of {out.resolve()}"
        version = client.create_model_version(name, source=source, run_id=run_id, tags=tags, description=description)
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    except MlflowException as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ExportError(f"Registering {name!r} in {uri} failed ({reason}); check the store (--tracking-uri) "
                          f"and the model name.") from None
    return {"name": name, "version": str(version.version), "run_id": run_id, "source": source, "tracking_uri": uri}

