"""The quick answers: ``import latentinfer``, ``latentinfer --help``, ``models`` and ``likelihoods`` load none of
torch, pyro, arviz, sbi, jax (the public names are imported on first use), and give what they gave before.

No timings here (those are in benchmarks/bench_imports.py): each check runs in a fresh interpreter and looks at
``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from scale_fixtures import PYTHON, ROOT, env

HEAVY = ("torch", "pyro", "arviz", "sbi", "jax")
PUBLIC = ["Analysis", "ForwardModel", "GaussianLikelihood", "LatentInferError", "Likelihood", "Nuisance", "Posterior",
          "load_likelihood", "load_model", "save_bundle", "tension", "__version__"]


def _fresh(code: str, **extra_env) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter; it ends by printing ``HEAVY=<sorted heavy modules present>``."""
    code = textwrap.dedent(code) + f"\nimport sys\nprint('HEAVY=' + ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    done = subprocess.run([PYTHON, "-c", code], env=env(**extra_env), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _heavy(done: subprocess.CompletedProcess) -> str:
    return [ln for ln in done.stdout.splitlines() if ln.startswith("HEAVY=")][-1].removeprefix("HEAVY=")


def _cli(argv: list[str], **extra_env) -> subprocess.CompletedProcess:
    return _fresh(
        f"""
        from latentinfer.cli import main
        try:
            code = main({argv!r})
        except SystemExit as exc:  # --help
            code = exc.code
        assert code == 0, code
        """,
        **extra_env,
    )


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["likelihoods"]])
def test_quick_commands_load_no_heavy_stack(argv):
    done = _cli(argv)
    assert _heavy(done) == "", f"latentinfer {' '.join(argv)} imported {_heavy(done)}"
    out = done.stdout
    if argv == ["--help"]:
        assert "models" in out and "likelihoods" in out and "run" in out
    elif argv == ["models"]:
        assert "cmb-lcdm" in out
    else:
        assert "planck2018-plik-lite" in out


def test_import_latentinfer_is_light_and_every_public_name_resolves():
    done = _fresh(
        """
        import sys
        import latentinfer
        print("AFTER_IMPORT=" + ",".join(m for m in ("torch", "pyro", "arviz", "sbi", "jax") if m in sys.modules))
        names = dir(latentinfer)
        print("DIR=" + ",".join(n for n in latentinfer.__all__ if n in names))
        import latentinfer.analysis, latentinfer.bundle, latentinfer.errors, latentinfer.forward
        import latentinfer.likelihoods, latentinfer.posterior
        assert latentinfer.Analysis is latentinfer.analysis.Analysis
        assert latentinfer.load_model is latentinfer.bundle.load_model
        assert latentinfer.save_bundle is latentinfer.bundle.save_bundle
        assert latentinfer.LatentInferError is latentinfer.errors.LatentInferError
        assert latentinfer.ForwardModel is latentinfer.forward.ForwardModel
        assert latentinfer.GaussianLikelihood is latentinfer.likelihoods.GaussianLikelihood
        assert latentinfer.Likelihood is latentinfer.likelihoods.Likelihood
        assert latentinfer.Nuisance is latentinfer.likelihoods.Nuisance
        assert latentinfer.load_likelihood is latentinfer.likelihoods.load_likelihood
        assert latentinfer.Posterior is latentinfer.posterior.Posterior
        import types
        assert isinstance(latentinfer.tension, types.ModuleType) and callable(latentinfer.tension)
        assert latentinfer.tension.check_tension is not None
        assert latentinfer.__version__ == "0.1.0"
        assert latentinfer.priors.check_spec  # a submodule by attribute, without importing it first
        try:
            latentinfer.nonesuch
        except AttributeError as exc:
            assert "nonesuch" in str(exc)
        else:
            raise AssertionError("latentinfer.nonesuch resolved")
        ns = {}
        exec("from latentinfer import *", ns)
        assert set(latentinfer.__all__) <= set(ns), set(latentinfer.__all__) - set(ns)
        """
    )
    out = done.stdout.splitlines()
    assert [ln for ln in out if ln.startswith("AFTER_IMPORT=")] == ["AFTER_IMPORT="]
    assert [ln for ln in out if ln.startswith("DIR=")] == ["DIR=" + ",".join(PUBLIC)]


def test_registrations_still_happen_on_first_use():
    """Registries filled by importing modules (bundle architectures, inference methods, likelihood types, tension
    metrics) are still filled when the names are reached through the lazy top level."""
    done = _fresh(
        """
        import latentinfer
        model = latentinfer.load_model("cmb-lcdm")  # architecture "ive-decoder", registered by latentinfer.ive.bundle
        assert model.meta["card"]["architecture"]["type"] == "ive-decoder"
        lik = latentinfer.load_likelihood("planck2018-lowl-tt")
        assert isinstance(lik, latentinfer.Likelihood)
        from latentinfer.methods import get_method
        assert get_method("nuts").name == "nuts"
        from latentinfer.tension import available_metrics
        assert "q_dm" in available_metrics() and "parameter_shift" in available_metrics()
        """
    )
    assert "torch" in _heavy(done)


def test_models_lists_bundles_from_env_without_torch(tmp_path):
    """A bundle found via $LATENTINFER_MODELS is listed from its card alone (weights are not read); a broken card
    says why; each row gives name, mode, latent count, held-out dchi2 and description, as
    latentinfer.bundle.card.model_rows gives them, and a bundle's description as latentinfer.bundle.list_models."""
    extra = tmp_path / "extra"
    good = extra / "aaa-extra"
    good.mkdir(parents=True)
    card = {"format": "latentinfer-bundle/1", "architecture": {"type": "mlp"}, "latent_names": ["z0"],
            "weights": "w.safetensors", "sha256": "0" * 64, "priors": {"z0": {"normal": [0, 1]}}, "description": "from env"}
    (good / "card.json").write_text(json.dumps(card))
    bad = extra / "bbb-bad-prior"
    bad.mkdir()
    (bad / "card.json").write_text(json.dumps({**card, "priors": {"z0": {"uniform": [1, 0]}}}))
    disc = extra / "ccc-discovered"
    disc.mkdir()
    (disc / "card.json").write_text(json.dumps({**card, "architecture": {"type": "ive-decoder"}, "mode": "unsupervised",
                                                "latent_names": ["z1", "z2", "z3"], "priors": {},
                                                "accuracy": {"encode_decode": {"median": 0.25, "p99": 1.5},
                                                             "emulate": {"median": 0.5, "p99": 2.0}}}))
    done = _cli(["models"], LATENTINFER_MODELS=str(extra))
    assert _heavy(done) == ""
    header, *lines = done.stdout.splitlines()[:-1]
    assert header.split()[:3] == ["NAME", "MODE", "LATENTS"] and header.endswith("DESCRIPTION")
    rows = {ln.split()[0]: ln for ln in lines}
    assert rows["aaa-extra"].split()[1:3] == ["-", "1"] and rows["aaa-extra"].endswith("  from env")
    assert "(unreadable:" in rows["bbb-bad-prior"] and "uniform needs low < high" in rows["bbb-bad-prior"]
    assert rows["ccc-discovered"].split()[1:3] == ["unsupervised", "3"]
    assert "0.25 / 1.5 | 0.5 / 2" in rows["ccc-discovered"]
    assert rows["cmb-lcdm"].split()[1] == "supervised"  # a card from before the key: an IVE with a rotated basis

    # the same rows as the torch-side listing gives, on the same search path
    ref = _fresh(
        """
        from latentinfer.bundle import list_models
        from latentinfer.bundle.card import model_rows
        for r in model_rows():
            assert list_models()[r["name"]] == r["description"]
            print(r["name"], r["mode"], r["latents"])
        """,
        LATENTINFER_MODELS=str(extra),
    )
    assert ref.stdout.splitlines()[:-1] == [" ".join(ln.split()[:3]) for ln in lines]


def test_likelihoods_listing_matches_the_registry(tmp_path, monkeypatch):
    """The torch-free listing gives what latentinfer.likelihoods.list_likelihoods gives, odd folders included."""
    from latentinfer.cli.catalog import list_likelihoods as fast
    from latentinfer.likelihoods import list_likelihoods as ref

    extra = tmp_path / "liks"
    specs = {
        "a-multiline": "type: gaussian\ndescription: |\n  first line\n  second line\n",
        "b-no-description": "type: gaussian\n",
        "c-empty-description": "type: gaussian\ndescription: ''\n",
        "d-bad-yaml": "type: [unclosed\n",
        "e-not-a-mapping": "- a\n- b\n",
        "f-number": "type: gaussian\ndescription: 42\n",
    }
    for name, text in specs.items():
        (extra / name).mkdir(parents=True)
        (extra / name / "likelihood.yaml").write_text(text)
    (extra / "g-no-spec").mkdir()
    (extra / "h-binary").mkdir()
    (extra / "h-binary" / "likelihood.yaml").write_bytes(b"\xff\xfe\x00bad")
    monkeypatch.setenv("LATENTINFER_LIKELIHOODS", str(extra))
    got = fast()
    assert got == ref()
    assert got["a-multiline"] == "first line" and got["f-number"] == "42" and got["d-bad-yaml"] == ""
    assert "planck2018-plik-lite" in got


@pytest.mark.parametrize(
    "spec",
    [
        "standard_normal", "normal", None, [0, 1], {"normal": [0, 1], "uniform": [0, 1]}, {"cauchy": [0, 1]},
        {"normal": [0, 1]}, {"normal": [0.5, 2.0]}, {"normal": [0, 0]}, {"normal": [0, -1]}, {"normal": [0]},
        {"normal": "0 1"}, {"normal": [True, 1]}, {"normal": [float("nan"), 1]}, {"normal": [10**400, 1]},
        {"uniform": [0, 1]}, {"uniform": [1, 0]}, {"uniform": [1, 1]}, {"fixed": 3}, {"fixed": "3"},
        {"fixed": float("inf")}, {"fixed": [1]}, {"mvnormal": [[0, 0], [[1, 0], [0, 1]]]},
        {"truncnormal": [0, 1, -1, 1]}, {"truncnormal": [0, 1, 1, -1]}, {"truncnormal": [0, 0, -1, 1]},
        {"truncnormal": [100, 1, -1, 1]}, {"truncnormal": [0, 1, -1]},
    ],
)
def test_card_prior_check_matches_priors_check_spec(spec):
    """latentinfer.card.check_prior (torch-free, used when reading a card) agrees with priors.check_spec."""
    from latentinfer.card import check_prior
    from latentinfer.errors import ConfigError
    from latentinfer.priors import check_spec

    def outcome(fn):
        try:
            return "ok", fn(spec, "p")
        except ConfigError as exc:
            return "error", str(exc)

    assert outcome(check_prior) == outcome(check_spec)
