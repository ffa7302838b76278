"""The command line's own behaviour: --version, and config files that cannot be read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from faceswap_pl import __version__
from faceswap_pl.cli import main


def test_version_names_the_package_python_and_torch():
    out = subprocess.run([sys.executable, "-m", "faceswap_pl.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith(f"faceswap-pl {__version__} (python ") and "torch 2." in out and "lightning " in out


@pytest.mark.parametrize("text, where", [
    ("model:\n  width: 0.5\n  backbone: [unet\ntrainer:\n  max_epochs: 1\n", "line 4, column 8"),
    ("model:\n\twidth: 0.5\n", "line 2, column 1"),
])
def test_malformed_config_names_its_file_and_line(tmp_path, capsys, text, where):
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"The config file '{config}' is not valid YAML at {where}" in err
    assert "usage:" not in err and err.count("\n") == 1


def test_missing_config_file_is_named(tmp_path, capsys):
    assert main(["fit", f"--config={tmp_path / 'nope.yaml'}"]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml' does not exist" in err and "shipped config (data/ghost_batches" in err and err.count("\n") == 1


def test_bash_completion_completes_commands_actions_options_and_configs(tmp_path):
    script = subprocess.run([sys.executable, "-m", "faceswap_pl.cli", "completion", "bash"], capture_output=True,
                            text=True, check=True).stdout
    (tmp_path / "completion.sh").write_text(script)

    def complete(*words: str) -> list[str]:
        array = " ".join(f"'{w}'" for w in ("faceswap-pl", *words))
        shell = (f"source {tmp_path / 'completion.sh'}; COMP_WORDS=({array}); COMP_CWORD={len(words)}; "
                 "_faceswap_pl; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True, cwd=tmp_path)
        return out.stdout.split()

    assert complete("sw") == ["swap", "sweep"]
    assert complete("runs", "") == ["compare", "list-experiments", "--help"]
    assert complete("swap", "--tracking") == ["--tracking-uri"]
    assert complete("fit", "--config", "gh") == ["ghost"]
    assert complete("fit", "--trainer.str") == ["--trainer.strategy"]
