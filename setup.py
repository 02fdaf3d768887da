"""Ship the top-level ``models/`` and ``likelihoods/`` folders inside the wheel.

They are copied to ``latentinfer/_bundled/`` at build time, so that a non-editable ``pip install .``
finds the decoder bundles and experiment likelihoods without the source tree.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithBundles(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "latentinfer" / "_bundled"
        for name in ("models", "likelihoods"):
            src = ROOT / name
            dst = target / name
            if dst.exists():
                shutil.rmtree(dst)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithBundles})
