"""The build step pyproject.toml cannot express: the shipped configs go into the wheel.

``experiments/`` and ``sweeps/`` stay at the top of the repository (where the docs and commands name them);
building copies their YAML files into ``faceswap_pl/_shipped/`` so that an installed package finds them by name
(:mod:`faceswap_pl.configs`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        for kind in ("experiments", "sweeps"):
            source = Path(kind)
            if not source.is_dir():  # building from an sdist without them: nothing to ship
                continue
            for path in sorted(source.rglob("*.yaml")):
                target = Path(self.build_lib) / "faceswap_pl" / "_shipped" / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)


setup(cmdclass={"build_py": BuildPyWithConfigs})
