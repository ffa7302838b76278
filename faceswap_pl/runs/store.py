"""The MLflow store: tracking URIs, a client that turns store and server failures into one sentence, experiments.

Bottom of the tracking floor (imports only mlflow and the bottom modules): training logs through it, and the
comparisons (:mod:`faceswap_pl.runs.compare`), sweeps, exports and commands read through it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from faceswap_pl.errors import FaceSwapError
from faceswap_pl.runs import ACCEPTED_URIS, DEFAULT_TRACKING_URI

PARAM_VALUE_LIMIT = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
HTTP_TIMEOUT_S = 5  # per request, for `runs` queries against a server
HTTP_MAX_RETRIES = 0

def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use, with relative local paths made absolute against the current folder.

    ``None`` (or ``""``) means ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_TRACKING_URI`. Accepted:
    ``sqlite:///PATH``, ``http(s)://...``, ``file:...`` and plain paths (a file store folder).
    """
    if not uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    uri = uri.strip()
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", uri)
    scheme = match.group(1).lower() if match else ""
    if not scheme or len(scheme) == 1:  # a plain path (a Windows drive letter is not a scheme)
        return Path(uri).expanduser().resolve().as_uri()
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri[len("sqlite:///"):].split("?")[0] in ("", ":memory:"):
            raise FaceSwapError(f"Tracking URI {uri!r} names no database file; use sqlite:///PATH.db "
                                f"(relative to the current folder) or sqlite:////ABSOLUTE/PATH.db.")
        path, sep, query = uri[len("sqlite:///"):].partition("?")
        path = Path(path).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        return f"sqlite:///{path.resolve()}{sep}{query}"
    if scheme in ("http", "https"):
        if not re.match(r"https?://[^/]", uri, re.IGNORECASE):
            raise FaceSwapError(f"Tracking URI {uri!r} has no host; use e.g. http://127.0.0.1:5000.")
        return uri.rstrip("/")
    if scheme == "file":
        rest = uri[len("file:"):]
        if rest.startswith("//"):  # file:///abs/dir or file://localhost/abs/dir
            return uri
        return Path(rest).expanduser().resolve().as_uri()
    raise FaceSwapError(f"Tracking URI {uri!r} is not supported; use {ACCEPTED_URIS}.")


def is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def mlflow_ui_command(uri: str | None = None) -> str:
    """How to browse the runs: the `mlflow ui` command line for a local store, a sentence for a server."""
    uri = resolve_tracking_uri(uri)
    if is_http(uri):
        return f"open {uri} in a browser (the MLflow server's UI)"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1 --port 5000"
    if uri.startswith("file:"):  # MLflow 3 opens a file store only when asked to
        command = f"MLFLOW_ALLOW_FILE_STORE=true {command}"
    return command


def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, lists as JSON, values cut to MLflow's 6000 characters."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, name))
            continue
        if isinstance(value, (list, tuple, dict)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        if len(text) > PARAM_VALUE_LIMIT:
            text = text[:PARAM_VALUE_LIMIT - 3] + "..."
        flat[name] = text
    return flat


@contextmanager
def tracking_client(uri: str | None) -> Iterator[tuple[Any, str]]:
    """``(MlflowClient, resolved uri)``; a missing store or an unreachable server becomes a FaceSwapError.

    Against a server, each request gets a short timeout and no retries unless the user set
    ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``; a file store is opened with
    ``MLFLOW_ALLOW_FILE_STORE=true``. These variables are set only for the call.
    """
    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].partition("?")[0])
        if not path.is_file():
            raise FaceSwapError(f"MLflow store {path} does not exist; train first (`faceswap-pl fit --config ...` "
                                f"logs there) or pass the store with --tracking-uri.")
    elif uri.startswith("file:"):
        path = Path(unquote(urlparse(uri).path))
        if not path.is_dir():
            raise FaceSwapError(f"MLflow file store {path} does not exist; pass an existing store with "
                                f"--tracking-uri.")
    http = is_http(uri)
    settings = {}
    if http:
        settings = {"MLFLOW_HTTP_REQUEST_TIMEOUT": HTTP_TIMEOUT_S, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": HTTP_MAX_RETRIES}
    elif uri.startswith("file:"):
        settings = {"MLFLOW_ALLOW_FILE_STORE": "true"}  # MLflow 3 refuses file stores unless asked; we only read
    saved = {}
    for name, value in settings.items():
        saved[name] = os.environ.get(name)
        if saved[name] is None:
            os.environ[name] = str(value)
    try:
        yield MlflowClient(tracking_uri=uri), uri
    except MlflowException as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        reason = reason.split(". Response body")[0]
        if len(reason) > 300:
            reason = reason[:297] + "..."
        if http:
            raise FaceSwapError(server_error(uri, str(error), reason)) from None
        raise FaceSwapError(f"MLflow store {uri} could not be read ({reason}); check that it is an MLflow "
                            f"store or pass another with --tracking-uri.") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def server_error(uri: str, message: str, reason: str) -> str:
    """One sentence for a failed request to a tracking server: unreachable, too slow, or not MLflow."""
    parsed = urlparse(uri)
    start = f"mlflow server --host {parsed.hostname} --port {parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    lowered = message.lower()
    if any(s in lowered for s in ("timed out", "timeout")):
        why = f"did not answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', HTTP_TIMEOUT_S)} s"
    elif any(s in lowered for s in ("connection refused", "failed to establish", "newconnectionerror",
                                    "max retries exceeded", "name or service not known", "nameresolution",
                                    "connectionerror", "connection aborted")):
        why = "is not reachable (no server answers there)"
    else:
        return (f"MLflow server {uri} answered with an error ({reason}); check that the address is an MLflow "
                f"tracking server (--tracking-uri or MLFLOW_TRACKING_URI).")
    return (f"MLflow server {uri} {why}; start it with `{start}` or check the address "
            f"(--tracking-uri or MLFLOW_TRACKING_URI).")


def all_runs(client, experiment_id: str, max_results: int | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs.extend(page)
        token = page.token
        if not token or (max_results is not None and len(runs) >= max_results):
            return runs


def has_runs(client, experiment_id: str) -> bool:
    return len(client.search_runs([experiment_id], max_results=1)) > 0


def experiments_of(client) -> list:
    return list(client.search_experiments(max_results=50000))


def list_experiments(uri: str | None = None) -> list[tuple[str, str, int]]:
    """``(name, id, number of active runs)`` of every active experiment, the most recently created first."""
    with tracking_client(uri) as (client, _):
        experiments = sorted(experiments_of(client), key=lambda e: e.creation_time or 0, reverse=True)
        return [(e.name, e.experiment_id, len(all_runs(client, e.experiment_id))) for e in experiments]


def names_list(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def pick_experiment(client, uri: str, name: str | None):
    """``(experiment, note)``: the named experiment, else the newest non-default one that has runs."""
    experiments = experiments_of(client)
    if name is not None:
        experiment = client.get_experiment_by_name(name)
        if experiment is None and name.isdigit():
            experiment = next((e for e in experiments if e.experiment_id == name), None)
        if experiment is None:
            raise FaceSwapError(f"Experiment {name!r} is not in {uri}; available: "
                                f"{names_list(sorted(e.name for e in experiments))} (pass one with --experiment).")
        if not has_runs(client, experiment.experiment_id):
            raise FaceSwapError(f"Experiment {experiment.name!r} in {uri} has no runs; train into it first or "
                                f"pick another with --experiment (`faceswap-pl runs list-experiments`).")
        return experiment, ""
    with_runs = [e for e in experiments if has_runs(client, e.experiment_id)]
    if not with_runs:
        raise FaceSwapError(f"No runs in {uri}; train first (`faceswap-pl fit --config experiments/tiny_cpu.yaml`) "
                            f"or pass the store that holds them with --tracking-uri.")
    candidates = [e for e in with_runs if e.experiment_id != "0" and e.name != "Default"] or with_runs
    candidates.sort(key=lambda e: e.creation_time or 0, reverse=True)
    note = ""
    if len(candidates) > 1:
        others = ", ".join(e.name for e in candidates[1:])
        note = f"newest of {len(candidates)} experiments with runs; others: {others} (choose with --experiment)"
    return candidates[0], note



def run_metrics(run_id: str, tracking_uri: str | None = None) -> dict[str, float]:
    """The latest value of every metric the MLflow run logged."""
    with tracking_client(tracking_uri) as (client, uri):
        return dict(get_run(client, uri, run_id).data.metrics)


def get_run(client, uri: str, run_id: str):
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        raise FaceSwapError(f"MLflow run {run_id!r} is not in {uri}; pick a run id from `faceswap-pl runs compare` "
                            f"or pass its store with --tracking-uri.") from None


def pick_checkpoint(paths: list[Path]) -> Path | None:
    best = sorted((p for p in paths if p.name.startswith("best") and p.suffix == ".ckpt"),
                  key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)
    if best:
        return best[0]
    last = [p for p in paths if p.name == "last.ckpt"]
    if last:
        return last[0]
    others = sorted((p for p in paths if p.suffix == ".ckpt"), key=lambda p: p.stat().st_mtime if p.exists() else 0,
                    reverse=True)
    return others[0] if others else None


def find_run_checkpoint(run_id: str, tracking_uri: str | None = None) -> Path:
    """The checkpoint of an MLflow training run: ``best-*.ckpt``, else ``last.ckpt``, else another ``.ckpt``.

    Looks in ``<default_root_dir>/<experiment id>/<run id>/checkpoints`` (Lightning's MLFlowLogger layout;
    ``default_root_dir`` from the run's params, else ``outputs``, relative to the current folder), then in the
    run's artifacts (a logged ``.ckpt``, downloaded).
    """
    with tracking_client(tracking_uri) as (client, uri):
        run = get_run(client, uri, run_id)
        params = run.data.params
        roots = [params.get(k) for k in ("trainer.default_root_dir", "default_root_dir")] + ["outputs"]
        searched = []
        for root in dict.fromkeys(r for r in roots if r):
            folder = Path(root).expanduser() / run.info.experiment_id / run_id / "checkpoints"
            searched.append(str(folder))
            if folder.is_dir():
                found = pick_checkpoint(list(folder.glob("*.ckpt")))
                if found is not None:
                    return found
        artifacts, pending = [], [None]
        while pending and len(artifacts) < 2000:
            for item in client.list_artifacts(run_id, pending.pop()):
                if item.is_dir:
                    pending.append(item.path)
                elif item.path.endswith(".ckpt"):
                    artifacts.append(item.path)
        chosen = pick_checkpoint([Path(a) for a in artifacts])
        if chosen is not None:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=chosen.as_posix(),
                                                        tracking_uri=uri)
            return Path(local)
    raise FaceSwapError(f"MLflow run {run_id} has no checkpoint in {', '.join(searched)} nor among its artifacts; "
                        f"run the export from the folder training ran in, or pass the file with --checkpoint.")



def download_model(uri: str, tracking_uri: str | None = None) -> Path:
    """A local copy of what ``uri`` names: a registered model's version (by alias or number) or a run's artifact.

    ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` are looked up in the store's registry and their source
    (for ``faceswap-pl export --register``: the run's ``export/`` folder) is downloaded; ``runs:/RUN_ID/PATH``
    is downloaded as it is. A name, alias, version, run or path the store does not have is one FaceSwapError.
    """
    with tracking_client(tracking_uri) as (client, resolved):
        if uri.startswith("runs:/"):
            parts = uri[len("runs:/"):].strip("/").split("/", 1)
            get_run(client, resolved, parts[0])
            source = uri
        else:
            reference = uri[len("models:/"):].strip("/")
            name, _, alias = reference.partition("@")
            name, _, number = (name, "", "") if alias else name.partition("/")
            if not name or not (alias or number):
                raise FaceSwapError(f"Model URI {uri!r} names no version; use models:/NAME@ALIAS (e.g. "
                                    f"models:/demo-generator@champion) or models:/NAME/VERSION.")
            try:
                version = (client.get_model_version_by_alias(name, alias) if alias
                           else client.get_model_version(name, number))
            except MlflowException:
                known = ", ".join(sorted(m.name for m in client.search_registered_models(max_results=50))) or "none"
                raise FaceSwapError(f"The registry of {resolved} has no {uri} (registered models: {known}); "
                                    f"register an export with `faceswap-pl export ... --register NAME` or pass "
                                    f"another --tracking-uri.") from None
            source = version.source
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=resolved))
        except (MlflowException, OSError) as error:
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            raise FaceSwapError(f"The files of {uri} ({source}) could not be downloaded from {resolved} ({reason}); "
                                f"check the path inside the run.") from None
