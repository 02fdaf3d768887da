"""The package layout (issue 21): stations with one-way imports, one registry, one loader, lazy start-up.

* every module imports on its own in a fresh interpreter (no order-dependent cycles);
* the import graph obeys the layout's rules (``tests/importgraph.py``), and the check fails on a planted violation;
* loading a model does not import the trainer;
* the ``Registry`` and the one file reader (``io.read_file``, ``io.check_sha256``) behave as documented;
* the run config validates through each method's own ``Settings``; every registered method can be covered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from importgraph import edges, module_name, violations

from latentinfer.errors import BundleError, ConfigError, LatentInferError

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "latentinfer"


def _modules() -> list[str]:
    return [module_name(ROOT, p) for p in sorted(PKG.rglob("*.py")) if p.name != "__main__.py"]


def test_every_module_imports_on_its_own():
    """In one fresh interpreter, each module is imported with every ``latentinfer`` module forgotten before it: an
    import that only works after another module happened to load first fails here."""
    code = textwrap.dedent(f"""
        import importlib, sys, traceback
        bad = []
        for name in {_modules()!r}:
            for k in [k for k in sys.modules if k == "latentinfer" or k.startswith("latentinfer.")]:
                del sys.modules[k]
            try:
                importlib.import_module(name)
            except Exception as exc:
                bad.append(name + ": " + type(exc).__name__ + ": " + str(exc).splitlines()[0])
        print("\\n".join(bad))
        sys.exit(1 if bad else 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_import_graph_obeys_the_layout():
    found = violations(ROOT)
    assert found == [], "\n".join(found)


def test_no_station_imports_another_inside_a_function_without_a_reason():
    """Hidden imports of another station remain only in the CLI (each subcommand loads what it needs) or with a
    ``# deferred: <reason>`` mark; optional heavy dependencies (sbi, dynesty, dask, CAMB) are third-party and are
    imported inside the functions that need them."""
    hidden = [e for e in edges(ROOT) if e.hidden and e.stations[0] != e.stations[1]
              and e.stations[0] not in {"cli"} and not e.marked]
    assert hidden == []


@pytest.mark.parametrize("plant, line, expect", [
    ("likelihoods/gaussian.py", "from ..methods import nuts", "likelihoods import no sampler"),
    ("config.py", "from .methods.chees import ChEESMethod", "config imports no sampler"),
    ("bundle/loader.py", "from ..ive import train", "imports nothing from training"),
    ("tension/api.py", "from ..report import write_report", "only cli/, report/ and runner"),
    # the program importing a method: also a cycle (methods -> program -> methods)
    ("program/density.py", "from ..methods import base", "station cycle"),
    ("coverage/verdict.py", "    from ..amortized import train", "inside a function"),
])
def test_the_graph_check_fails_on_a_planted_violation(tmp_path, plant, line, expect):
    """The check is shown to fail: a forbidden import planted in a copy of the package is reported."""
    shutil.copytree(PKG, tmp_path / "latentinfer", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "latentinfer" / plant
    text = target.read_text()
    if line.startswith(" "):  # hidden: inside a new function at the end
        text += "\n\ndef _planted():\n" + line + "\n"
    else:
        lines = text.splitlines(keepends=True)
        at = max(i for i, ln in enumerate(lines) if ln.startswith(("from ", "import "))) + 1
        text = "".join(lines[:at] + [line + "  # planted\n"] + lines[at:])
    target.write_text(text)
    assert violations(ROOT) == []  # the real package is clean
    found = violations(tmp_path)
    assert any(expect in v for v in found), found


def test_loading_a_model_does_not_import_the_trainer():
    code = ("import sys, latentinfer; latentinfer.load_model('cmb-lcdm'); "
            "print(sorted(m for m in sys.modules if m.startswith(('latentinfer.ive', 'latentinfer.simulate', 'sbi'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


# -- one registry ---------------------------------------------------------------------------------------------
def test_registry_registers_lists_and_names_the_known_entries(tmp_path, monkeypatch):
    from latentinfer.registry import Registry

    pkg = tmp_path / "plugins_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from latentinfer.registry import Registry\nTHINGS = Registry('thing', __name__, skip=('skipped',))\n")
    (pkg / "alpha.py").write_text("from . import THINGS\n@THINGS.register('alpha')\ndef alpha():\n    return 1\n")
    (pkg / "skipped.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins_demo

    reg = plugins_demo.THINGS
    assert reg.names() == ["alpha"] and "alpha" in reg and reg.get("alpha")() == 1  # found by the package scan
    with pytest.raises(LatentInferError, match=r"^where: unknown thing 'beta' \(known: alpha\)$"):
        reg.get("beta", where="where")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(lambda: 2)
    own = Registry("gadget", error=ConfigError)
    own.register("x")(int)
    with pytest.raises(ConfigError, match="unknown gadget 'y'"):
        own.get("y")


def test_every_plugin_family_uses_the_one_registry():
    from latentinfer.bundle import ARCHITECTURES
    from latentinfer.evidence import EVIDENCE
    from latentinfer.export import EXPORTERS
    from latentinfer.likelihoods.binning import BINNINGS
    from latentinfer.likelihoods.registry import TYPES
    from latentinfer.likelihoods.transforms import TRANSFORMS
    from latentinfer.methods import METHODS
    from latentinfer.registry import Registry
    from latentinfer.tension import METRICS

    families = {"architectures": ARCHITECTURES, "evidence": EVIDENCE, "export": EXPORTERS, "binnings": BINNINGS,
                "likelihood types": TYPES, "transforms": TRANSFORMS, "methods": METHODS, "tension": METRICS}
    for name, reg in families.items():
        assert isinstance(reg, Registry) and reg.names(), name
    assert {"nuts", "chees", "emcee", "vi", "npe", "nle", "nre"} <= set(METHODS.names())
    assert {"mlp", "ive-decoder"} <= set(ARCHITECTURES.names())


# -- one loader -----------------------------------------------------------------------------------------------
def test_read_file_reads_yaml_json_and_safetensors_and_fails_in_one_line(tmp_path):
    import torch
    from safetensors.torch import save_file

    from latentinfer.io import check_sha256, read_file, sha256_file

    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "a.json").write_text('{"x": 1}')
    assert read_file(tmp_path / "a.yaml") == {"x": 1} == read_file(tmp_path / "a.json")
    (tmp_path / "bad.yaml").write_text("x: [1\n")
    (tmp_path / "bad.json").write_text("{x")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    cases = [(tmp_path / "none.yaml", "file not found"), (tmp_path / "bad.yaml", "not valid YAML"),
             (tmp_path / "bad.json", "not valid JSON"), (tmp_path / "bin.yaml", "not a text file")]
    for path, msg in cases:
        with pytest.raises(ConfigError, match=msg) as info:
            read_file(path, error=ConfigError)
        assert "\n" not in str(info.value)
    w = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(3)}, str(w))
    assert torch.equal(read_file(w, sha256=sha256_file(w))["a"], torch.ones(3))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        read_file(w, error=BundleError, sha256="0" * 64)
    with pytest.raises(BundleError, match="sha256 mismatch"):
        check_sha256(w, "f" * 64, error=BundleError)


def test_no_module_reads_yaml_or_weights_itself():
    """YAML, JSON files and weights are read through ``io.read_file`` (one place for safe loading and one-line
    errors): no other module calls ``yaml.safe_load`` on a file or ``safetensors`` ``load_file``."""
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "io.py":
            continue
        text = path.read_text()
        for needle in ("safe_load(p.read_text", "safe_load(path.read_text", "load_file(str("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


# -- method settings ------------------------------------------------------------------------------------------
def test_config_validates_through_each_methods_settings():
    from latentinfer.config import foreign_settings, validate_config
    from latentinfer.methods import METHODS

    base = {"model": "cmb-lcdm", "likelihoods": ["planck2018-lowl-tt"]}
    cfg = validate_config({**base, "inference": {"method": "chees"}})
    assert cfg["inference"] == {"method": "chees", **METHODS.get("chees").Settings.check({}, "x")}
    assert cfg["inference"]["chains"] == 32  # chees' own default, owned by its Settings
    assert validate_config({**base, "inference": {"method": "nuts"}})["inference"]["chains"] == 4
    with pytest.raises(ConfigError, match="key 'chains' must be >= 2 for method chees"):
        validate_config({**base, "inference": {"method": "chees", "chains": 1}})
    with pytest.raises(ConfigError, match="unknown key 'chanis'"):
        validate_config({**base, "inference": {"method": "nuts", "chanis": 2}})
    with pytest.raises(ConfigError, match="key 'guide' must be one of"):
        validate_config({**base, "inference": {"method": "vi", "guide": "gp"}})
    # another method's setting is type-checked at load and refused by a run unless at its default
    with pytest.raises(ConfigError, match="key 'walkers' must be int"):
        validate_config({**base, "inference": {"method": "nuts", "walkers": "many"}})
    with pytest.raises(ConfigError, match="key 'walkers' is not a setting of method 'nuts'"):
        foreign_settings(validate_config({**base, "inference": {"method": "nuts", "walkers": 64}}))


def test_coverage_runs_any_registered_method_through_the_registry(tmp_path, capsys):
    """``coverage --method emcee`` (a method coverage did not know by name before the registry)."""
    from truth_models import LinearGaussian, write_toy_project

    from latentinfer.cli import main

    raw = write_toy_project(tmp_path, LinearGaussian(d=2, n=8, seed=4))
    raw["inference"] = {"method": "emcee", "walkers": 8, "warmup": 200, "draws": 100, "progress": False}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "cov"
    assert main(["coverage", str(cfg), "--method", "emcee", "--n", "20", "--out", str(out), "--draws", "50", "--workers", "1"]) == 0
    rec = json.loads((out / "coverage.json").read_text())
    assert rec["method"] == "emcee" and rec["settings"]["walkers"] == 8 and len(rec["curves"]["sbc_ranks"]) == 20
    assert main(["coverage", str(cfg), "--method", "gibbs", "--n", "20", "--out", str(out)]) == 2
    assert "coverage: --method must be one of" in capsys.readouterr().err


# -- one corpus root ------------------------------------------------------------------------------------------
def test_corpus_files_are_found_under_the_corpus_root(tmp_path, monkeypatch):
    import os

    from latentinfer.paths import CORPUS_ENV, corpus_name, corpus_path, use_corpus_root

    a, b = tmp_path / "a", tmp_path / "b"
    (a / "ext").mkdir(parents=True)
    b.mkdir()
    (a / "ext" / "ede.npz").write_bytes(b"x")
    (b / "lcdm.npz").write_bytes(b"y")
    monkeypatch.setenv(CORPUS_ENV, os.pathsep.join([str(a), str(b)]))
    assert corpus_path("ext/ede.npz") == a / "ext" / "ede.npz"  # first root that has it
    assert corpus_path("lcdm.npz") == b / "lcdm.npz"
    assert corpus_path("new/ede.npz") == a / "new" / "ede.npz"  # not made yet: under the first root
    assert corpus_path(b / "lcdm.npz") == b / "lcdm.npz"  # absolute: as given
    assert corpus_name(b / "lcdm.npz") == "lcdm.npz" and corpus_name(a / "ext" / "ede.npz") == "ext/ede.npz"
    c = tmp_path / "c"
    use_corpus_root(c)  # what --corpus-root DIR does
    assert os.environ[CORPUS_ENV].split(os.pathsep)[0] == str(c.resolve())
    monkeypatch.delenv(CORPUS_ENV)
    assert corpus_path("lcdm.npz") == Path.cwd() / "corpus" / "lcdm.npz"  # default root ./corpus


def test_shipped_configs_and_cards_name_corpus_files_relative_to_the_root():
    """No training config, bundle card or test names a corpus file by a path of the machine it was made on."""
    import re

    offenders = []
    files = [*ROOT.glob("models/*/card.json"), *ROOT.glob("models/*/train.yaml"), *ROOT.glob("configs/*.yaml"),
             *ROOT.glob("tests/**/*.py"), *PKG.rglob("*.py")]
    for f in files:
        for ln in f.read_text().splitlines():
            if re.search(r"/work/(shared|corpus)/", ln) and "test_layout" not in f.name:
                offenders.append(f"{f.relative_to(ROOT)}: {ln.strip()[:100]}")
    assert offenders == []
    card = json.loads((ROOT / "models" / "cmb-lcdm" / "card.json").read_text())
    for item in card["corpus"]["files"]:
        assert not Path(item["path"]).is_absolute() and len(item["sha256"]) == 64


def test_a_missing_corpus_file_names_the_root(tmp_path, monkeypatch):
    from latentinfer.errors import DataError
    from latentinfer.ive.data import load_corpus
    from latentinfer.paths import CORPUS_ENV

    monkeypatch.setenv(CORPUS_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"corpus file .*nope\.npz not found \(corpus files are named relative to the root"):
        load_corpus("nope.npz")
