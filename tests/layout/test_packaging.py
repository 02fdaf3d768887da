"""A non-editable install ships models/ and likelihoods/ inside the wheel and finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_bundles_and_installed_copy_finds_them(tmp_path):
    (ROOT / "likelihoods").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "w"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next((tmp_path / "w").glob("latentinfer-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for kind in ("models", "likelihoods"):
        shipped = [p for p in (ROOT / kind).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        for p in shipped:
            assert f"latentinfer/_bundled/{kind}/{p.relative_to(ROOT / kind).as_posix()}" in names
    # install into a plain folder and list from outside the source tree
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import latentinfer, latentinfer.paths as p; print(latentinfer.__file__); print(sorted(p.available('likelihoods')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert str(target) in out.splitlines()[0]
    expected = sorted(p.name for p in (ROOT / "likelihoods").iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert out.splitlines()[1] == str(expected)
