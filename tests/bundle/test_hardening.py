"""Hardening: no generated input makes the config loader, the bundle reader, the likelihood spec loader or the
theory-file reader raise anything but :class:`LatentInferError`; bundles load weights only from safetensors
with a matching sha256 and never from outside the bundle; run folders are never left half-written."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentinfer import LatentInferError, save_bundle
from latentinfer.bundle import load_model, read_card
from latentinfer.config import load_config, validate_config
from latentinfer.errors import BundleError
from latentinfer.likelihoods import load_likelihood
from scale_fixtures import PYTHON, env, make_linear_problem, write_config

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- generators ---------------------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),  # too large for a float
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["nuts", "emcee", "vi", "standard_normal", "uniform", "latent", "physical", "harmonic", "tcp://127.0.0.1:1", "../../etc/passwd"]),
)
KEYS = ["model", "space", "likelihoods", "prior", "priors", "inference", "emulator_error", "evidence", "report",
        "cluster", "name", "method", "seed", "chains", "warmup", "draws", "normal", "uniform", "fixed", "mvnormal",
        "address", "slurm", "jobs", "target_accept", "lr", "guide", "z0", "tau"]
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


@st.composite
def near_configs(draw):
    """A valid config with some values replaced by arbitrary ones: reaches the checks past the first key."""
    cfg = {
        "model": "m",
        "likelihoods": ["a", {"name": "b", "spectra": "TT"}],
        "priors": {"tau": {"normal": [0.05, 0.01]}},
        "inference": {"method": "nuts", "chains": 2, "warmup": 10, "draws": 10, "seed": 0},
        "cluster": {"address": "tcp://127.0.0.1:8786"},
    }
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "inference", "priors", "cluster"]))
        key, val = draw(st.sampled_from(KEYS)), draw(values)
        if where == "top":
            cfg[key] = val
        elif isinstance(cfg.get(where), dict):
            cfg[where][key] = val
    return cfg


def _only_our_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except LatentInferError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(str(exc))  # one line
        return None


# -- the config loader --------------------------------------------------------------------------------------
@FAST
@given(st.one_of(values, near_configs()))
def test_validate_config_raises_only_latentinfer_error(raw):
    _only_our_error(validate_config, raw)


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), near_configs().map(yaml.safe_dump)))
def test_load_config_on_any_file_content(content):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "run.yaml"
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        _only_our_error(load_config, p)


@pytest.mark.parametrize(
    "text",
    ["[" * 5000 + "]" * 5000, "a: &a [*a]", "!!python/object/apply:os.system ['true']", "inference: {seed: 1e999}",
     "priors: {z: {normal: [0, 1e400]}}", "priors: {z: {fixed: 99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999}}"],
)
def test_hostile_yaml_is_a_clean_error(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    with pytest.raises(LatentInferError):
        load_config(p)


def test_config_paths_that_are_not_files(tmp_path):
    for p in (tmp_path, tmp_path / "missing.yaml", tmp_path / ("x" * 300 + ".yaml"), "bad\0name.yaml"):
        with pytest.raises(LatentInferError):
            load_config(p)


# -- bundles ------------------------------------------------------------------------------------------------
def _bundle(folder: Path) -> Path:
    card = {"architecture": {"type": "mlp", "hidden": [], "outputs": {"y": 3}}, "latent_names": ["z0", "z1"]}
    return save_bundle(folder, card, {"head.weight": torch.ones(3, 2), "head.bias": torch.zeros(3)})


card_values = st.one_of(values, st.sampled_from(["weights.safetensors", "../../etc/passwd", "/etc/passwd", "x\0y", "a" * 400,
                                                 "link.safetensors", "../outside.safetensors", ".", "", "weights.pt"]))


@st.composite
def cards(draw):
    base = {"format": "latentinfer-bundle/1", "architecture": {"type": "mlp", "hidden": [], "outputs": {"y": 3}},
            "latent_names": ["z0", "z1"], "weights": "weights.safetensors", "sha256": "0" * 64}
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(list(base) + ["priors", "units", "description", "hidden", "outputs", "activation"]))
        if draw(st.booleans()) and key in base:
            del base[key]
        elif key in ("hidden", "outputs", "activation"):
            if isinstance(base.get("architecture"), dict):
                base["architecture"][key] = draw(card_values)
        else:
            base[key] = draw(card_values)
    return base


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(cards(), values), st.booleans(), st.booleans())
def test_cards_raise_only_latentinfer_error(card, right_hash, as_text):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _bundle(Path(tmp) / "b")
        (Path(tmp) / "outside.safetensors").write_bytes((folder / "weights.safetensors").read_bytes())
        os.symlink(Path(tmp) / "outside.safetensors", folder / "link.safetensors")
        if right_hash and isinstance(card, dict) and isinstance(card.get("weights"), str) and card["weights"] == "weights.safetensors":
            card["sha256"] = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
        text = json.dumps(card, default=str) if not as_text else str(card)
        (folder / "card.json").write_text(text)
        _only_our_error(read_card, folder)
        model = _only_our_error(load_model, folder)
        if model is not None:  # only a card naming the real weights, with their hash, loads
            assert card["weights"] == "weights.safetensors" and right_hash


def test_bundle_weights_must_match_the_card_hash(tmp_path):
    folder = _bundle(tmp_path / "b")
    load_model(folder)
    w = folder / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_model(folder)


@pytest.mark.parametrize("weights", ["../outside.safetensors", "/tmp/../etc/passwd", "../../etc/passwd", "link.safetensors", "sub/../../outside.safetensors"])
def test_bundle_paths_cannot_leave_the_bundle(tmp_path, weights):
    folder = _bundle(tmp_path / "b")
    (tmp_path / "outside.safetensors").write_bytes((folder / "weights.safetensors").read_bytes())
    os.symlink(tmp_path / "outside.safetensors", folder / "link.safetensors")
    card = json.loads((folder / "card.json").read_text())
    card["weights"] = weights
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_model(folder)


def test_bundle_never_unpickles(tmp_path):
    folder = _bundle(tmp_path / "b")
    marker = tmp_path / "pwned"
    payload = tmp_path / "b" / "weights.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    payload.write_bytes(pickle.dumps(Evil()))
    card = json.loads((folder / "card.json").read_text())
    card.update(weights="weights.pt", sha256=hashlib.sha256(payload.read_bytes()).hexdigest())
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="safetensors"):
        load_model(folder)
    # a pickle renamed to .safetensors with a matching hash is still refused by the safetensors reader
    fake = folder / "fake.safetensors"
    fake.write_bytes(payload.read_bytes())
    card.update(weights="fake.safetensors", sha256=hashlib.sha256(fake.read_bytes()).hexdigest())
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError):
        load_model(folder)
    assert not marker.exists()


def test_save_bundle_refuses_extra_files_outside(tmp_path):
    with pytest.raises(BundleError, match="outside the bundle"):
        save_bundle(tmp_path / "b", {"architecture": {"type": "mlp", "outputs": {"y": 1}}, "latent_names": ["z"]},
                    {"head.weight": torch.ones(1, 1), "head.bias": torch.zeros(1)}, extra_files={"../evil.txt": "x"})
    assert not (tmp_path / "evil.txt").exists()


# -- likelihood spec loader and theory-file reader ----------------------------------------------------------
def _registered_types() -> list[str]:
    from latentinfer.likelihoods.registry import TYPES

    return sorted(TYPES.names())


@st.composite
def likelihood_specs(draw):
    spec = {"type": draw(st.one_of(st.sampled_from(_registered_types()), scalars)), "description": draw(scalars)}
    for key in draw(st.lists(st.sampled_from(["data", "cov", "output", "name", "spectra", "ell_range", "nuisance", "theory", "bins", "variants"]), max_size=5)):
        spec[key] = draw(st.one_of(card_values, st.sampled_from(["data.txt", "cov.txt", "missing.txt", "../data.txt"])))
    return spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(likelihood_specs(), values, st.text(max_size=200), st.binary(max_size=100)),
       st.sampled_from(["ok", "nan", "ragged", "empty", "text"]))
def test_likelihood_specs_raise_only_latentinfer_error(spec, files):
    contents = {"ok": ("1 2 3\n", "1 0 0\n0 1 0\n0 0 1\n"), "nan": ("1 nan 3\n", "1 0 0\n0 1 0\n0 0 1\n"),
                "ragged": ("1 2 3\n", "1 0\n0 1 0\n"), "empty": ("", ""), "text": ("a b c\n", "\xff\n")}[files]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "lik"
        folder.mkdir()
        (folder / "data.txt").write_text(contents[0])
        (folder / "cov.txt").write_text(contents[1])
        (Path(tmp) / "data.txt").write_text("1 2 3\n")
        target = folder / "likelihood.yaml"
        if isinstance(spec, bytes):
            target.write_bytes(spec)
        else:
            target.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, allow_unicode=True))
        _only_our_error(load_likelihood, folder)


def test_deeply_nested_likelihood_spec_is_a_clean_error(tmp_path):
    (tmp_path / "likelihood.yaml").write_text("[" * 3000)  # PyYAML recurses once per level
    with pytest.raises(LatentInferError, match="likelihood.yaml"):
        load_likelihood(tmp_path)


def _theory_reader():
    if importlib.util.find_spec("latentinfer.likelihoods.theory") is None:
        return None
    from latentinfer.likelihoods import theory

    return getattr(theory, "read_theory_file", None)


@pytest.mark.skipif(_theory_reader() is None, reason="latentinfer.likelihoods.theory.read_theory_file is not merged yet (branch lik)")
@FAST
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400),
                 st.lists(st.lists(st.one_of(st.floats(), st.integers(-5000, 5000)), min_size=1, max_size=6), max_size=20).map(
                     lambda rows: "# ell TT TE EE\n" + "\n".join(" ".join(map(str, r)) for r in rows))))
def test_theory_files_raise_only_latentinfer_error(content):
    read = _theory_reader()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "theory.dat"
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        _only_our_error(read, p)


# -- run folders are never half-written ---------------------------------------------------------------------
WRITER = """
import sys, numpy as np
from latentinfer.posterior import Posterior
from latentinfer.runner import write_run
cfg = {"model": "m", "likelihoods": [{"name": "l"}]}
small = Posterior.from_arrays({"z": np.zeros((1, 10))}, attrs={"method": "nuts"})
write_run(small, cfg, sys.argv[1], wall=0.0)
print("first run written", flush=True)
rng = np.random.default_rng(0)
big = Posterior.from_arrays({f"z{i}": rng.normal(size=(4, 400_000)) for i in range(12)}, attrs={"method": "nuts"})
print("writing", flush=True)
write_run(big, cfg, sys.argv[1], wall=0.0)
"""


def test_run_folder_killed_mid_write_holds_no_partial_file(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([PYTHON, "-c", WRITER, str(out)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"first run written"
        t0 = time.monotonic()
        while not list(out.glob(".posterior.nc.*.tmp")):  # the second posterior is being written
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() - t0 < 60
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    from latentinfer.posterior import Posterior

    # every visible file is complete: the earlier posterior, intact; no summary, so the run reads as unfinished
    assert Posterior.from_netcdf(out / "posterior.nc").num_draws == 10
    assert not (out / "summary.json").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["model"] == "m"
    assert list(out.glob(".*.tmp"))  # the killed writer's temporary file ...

    problem = make_linear_problem(tmp_path)
    from latentinfer.runner import run_config

    run_config(load_config(write_config(tmp_path / "c.yaml", problem, chains=1, warmup=5, draws=5)), out)
    assert not list(out.glob(".*.tmp"))  # ... is removed by the next run into the folder
    assert json.loads((out / "summary.json").read_text())["method"] == "nuts"
    assert np.isfinite(Posterior.from_netcdf(out / "posterior.nc").samples()).all()
