"""The CAMB simulator: the design reproduces the corpus exactly; CAMB reproduces corpus rows (slow); resumable chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentinfer.cli import main
from latentinfer.errors import ConfigError
from latentinfer.paths import corpus_path
from latentinfer.simulate import BOXES, SEEDS, camb_spectra, parse_box, parse_rows, simulate, sobol_design

CORPUS = corpus_path("lcdm.npz").parent  # the corpus root that holds the shared files ($LATENTINFER_CORPUS)
needs_corpus = pytest.mark.skipif(not (CORPUS / "lcdm.npz").is_file(),
                                  reason="shared CAMB corpus not found under the corpus root ($LATENTINFER_CORPUS, README 'Corpus')")
#: The files of the shared corpus, named relative to the corpus root.
SHARED = {"lcdm.npz", "lcdm_core.npz", "ede.npz", "ede_edge.npz"}


@needs_corpus
@pytest.mark.parametrize("name,n", [("lcdm", 2000), ("ede", 1000), ("lcdm_core", 800)])
def test_design_matches_corpus_params(name, n):
    with np.load(CORPUS / f"{name}.npz") as f:
        params, names, low, high = f["params"], list(f["names"]), f["box_low"], f["box_high"]
    assert list(BOXES[name]) == names
    np.testing.assert_array_equal(np.array([v[0] for v in BOXES[name].values()]), low)
    np.testing.assert_array_equal(np.array([v[1] for v in BOXES[name].values()]), high)
    np.testing.assert_array_equal(sobol_design(BOXES[name], n, SEEDS[name]), params)  # bit-identical


@needs_corpus
def test_longer_design_extends_the_corpus_design():
    """``--n 4096 --seed 12 --rows 1000:N`` extends the EDE corpus: its first 1000 points are the corpus's own."""
    with np.load(CORPUS / "ede.npz") as f:
        params = f["params"]
    longer = sobol_design(BOXES["ede"], 4096, SEEDS["ede"])
    np.testing.assert_array_equal(longer[:1000], params)
    assert len(np.unique(longer[1000:], axis=0)) == 3096 and not (longer[1000:, None] == params[None]).all(-1).any()
    # and --n 8192 continues --n 4096 (rows 3375-4724 of the shipped cmb-ede came from --n 8192)
    np.testing.assert_array_equal(sobol_design(BOXES["ede"], 8192, SEEDS["ede"])[:4096], longer)


def test_rows_parsing_and_bad_rows(tmp_path, capsys):
    np.testing.assert_array_equal(parse_rows("1000:1003", 4096), [1000, 1001, 1002])
    assert parse_rows(None, 10) is None
    for text, message in (("5:2", "START < STOP"), ("0:11", "STOP <= --n"), ("a:b", "START:STOP")):
        with pytest.raises(ConfigError, match=message):
            parse_rows(text, 10)
    assert main(["simulate", "--model", "ede", "--n", "10", "--seed", "12", "--out", str(tmp_path), "--rows", "8:20"]) == 2
    assert "--rows" in capsys.readouterr().err


def test_design_other_seed_differs_and_stays_in_box():
    a, b = sobol_design(BOXES["lcdm"], 64, 11), sobol_design(BOXES["lcdm"], 64, 12)
    assert not np.allclose(a, b)
    lo, hi = np.array([v[0] for v in BOXES["lcdm"].values()]), np.array([v[1] for v in BOXES["lcdm"].values()])
    assert (a >= lo).all() and (a <= hi).all()


def test_box_override_and_bad_box():
    box = parse_box("H0=63.5:71.5", "lcdm")
    assert box["H0"] == (63.5, 71.5) and box["tau"] == BOXES["lcdm"]["tau"]
    with pytest.raises(ConfigError, match="unknown parameter 'h0'"):
        parse_box("h0=60:70", "lcdm")
    with pytest.raises(ConfigError, match="LOW < HIGH"):
        parse_box("H0=70:60", "lcdm")


def test_cli_bad_box_exits_2(tmp_path, capsys):
    assert main(["simulate", "--model", "lcdm", "--n", "2", "--seed", "1", "--out", str(tmp_path), "--box", "Om=0:1"]) == 2
    assert "unknown parameter 'Om'" in capsys.readouterr().err


def test_camb_failure_gives_nan_row_and_ok_false():
    # a negative baryon density makes CAMB refuse the model: the row is flagged, not raised
    out = camb_spectra([-0.02, 0.12, 67.0, 3.04, 0.965, 0.054], list(BOXES["lcdm"]))
    assert out["ok"] is False and np.isnan(out["TT"]).all() and np.isnan(out["derived"]).all()


@pytest.mark.slow
@needs_corpus
def test_simulator_reproduces_two_corpus_rows_and_resumes(tmp_path):
    rows = [7, 1234]
    path = simulate("lcdm", 2000, 11, tmp_path, rows=rows, chunk=1, workers=1)
    with np.load(path) as new, np.load(CORPUS / "lcdm.npz") as ref:
        assert new["ok"].all()
        np.testing.assert_array_equal(new["params"], ref["params"][rows])
        np.testing.assert_array_equal(new["ell"], ref["ell"])
        for k in ("TT", "TE", "EE", "PP"):
            scale = np.abs(ref[k][rows]).max(1, keepdims=True)  # TE crosses zero: compare to the row's scale
            err = np.abs(new[k] - ref[k][rows]) / scale
            assert err.max() < 1e-4, (k, err.max())
        np.testing.assert_allclose(new["derived"], ref["derived"][rows], rtol=1e-6)
    # resume: the chunk files are found again and not recomputed
    chunks = sorted((tmp_path / "chunks").glob("*.json"))
    assert len(chunks) == 2
    stamp = [c.stat().st_mtime_ns for c in chunks]
    simulate("lcdm", 2000, 11, tmp_path, rows=rows, chunk=1, workers=1)
    assert [c.stat().st_mtime_ns for c in chunks] == stamp


@pytest.mark.slow
@needs_corpus
def test_ede_at_zero_fde_is_lcdm():
    """Why LCDM rows may train an EDE model at fde_zc = 0 (``lcdm_as_ede``): CAMB's EarlyQuintessence at
    fde_zc = 0 (run as 1e-6) gives the LCDM corpus row to dchi2 < 1e-5 under the plik_lite covariance, whatever
    log10_zc and theta_i; a small EDE fraction (0.02) is already far away (dchi2 > 1)."""
    from latentinfer.ive.accuracy import dchi2, load_plik_lite_binning
    from latentinfer.ive.data import corpus_ell_grid, spline_to_integer

    binning = load_plik_lite_binning()
    with np.load(CORPUS / "lcdm_core.npz") as f:
        theta, ref = f["params"][3], {k: f[k][3][None] for k in ("TT", "TE", "EE")}
    names = ["ombh2", "omch2", "H0", "logA", "ns", "tau", "fde_zc", "log10_zc", "theta_i"]
    full = lambda s: {k: spline_to_integer(corpus_ell_grid(), v) for k, v in s.items()}  # noqa: E731
    ref = full(ref)
    for extra, bound in (([0.0, 3.3, 0.7], ("<", 1e-5)), ([0.0, 3.9, 2.8], ("<", 1e-5)), ([0.02, 3.5, 2.0], (">", 1.0))):
        s = camb_spectra(list(theta) + extra, names)
        d = float(dchi2(binning, full({k: np.asarray(s[k])[None] for k in ("TT", "TE", "EE")}), ref)[0])
        assert (d < bound[1]) if bound[0] == "<" else (d > bound[1]), (extra, d)


def test_chunk_keys_name_the_box_when_it_is_not_the_default():
    """A resumed run never takes chunks of another design: a box override changes every key."""
    from latentinfer.simulate import chunk_keys

    idx = np.arange(3, 8)
    default = chunk_keys("ede", 4096, 14, idx, 2, dict(BOXES["ede"]))
    assert default == ["chunk-ede-s14-n4096-000003-000004", "chunk-ede-s14-n4096-000005-000006",
                       "chunk-ede-s14-n4096-000007-000007"]
    hi = chunk_keys("ede", 4096, 14, idx, 2, parse_box("fde_zc=0.075:0.15", "ede"))
    hi2 = chunk_keys("ede", 4096, 14, idx, 2, parse_box("fde_zc=0.075:0.14", "ede"))
    assert len(set(default) | set(hi) | set(hi2)) == 9
    assert hi == chunk_keys("ede", 4096, 14, idx, 2, parse_box("fde_zc=0.075:0.150", "ede"))  # same box, same keys


def _recipe_config(tmp_path, simulate_block, corpus=None):
    import yaml

    corpus = corpus or list(simulate_block)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "corpus": corpus, "simulate": simulate_block}))
    return path


@pytest.mark.parametrize("block,needle", [
    ({"X/lcdm.npz": {"model": "lcdm", "n": 10, "seed": 1, "rowz": "0:2"}}, "unknown key 'rowz'"),
    ({"X/lcdm.npz": {"model": "lcdm", "n": 10}}, "missing key 'seed'"),
    ({"X/lcdm.npz": {"model": "lcdm", "n": "10", "seed": 1}}, "key 'n' must be int"),
    ({"X/ede.npz": {"model": "lcdm", "n": 10, "seed": 1}}, "must be named lcdm.npz"),
    ({"X/lcdm.npz": {"model": "lcdm", "n": 10, "seed": 1, "rows": "5:20"}}, "--rows"),
    ({"X/lcdm.npz": {"model": "lcdm", "n": 10, "seed": 1, "box": "fde_zc=0:1"}}, "unknown parameter 'fde_zc'"),
    ({"X/lcdm.npz": {"model": "wcdm", "n": 10, "seed": 1}}, "key 'model' must be lcdm or ede"),
])
def test_bad_simulate_block_exits_2_naming_the_key(tmp_path, capsys, block, needle):
    block = {str(tmp_path / k): v for k, v in block.items()}
    cfg = _recipe_config(tmp_path, block)
    for argv in (["simulate", "--config", str(cfg), "--plan"], ["train", str(cfg), "--out", str(tmp_path / "m")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "simulate:" in err and len(err.splitlines()) == 1, err
    # a recipe for a file that is not in the corpus
    cfg = _recipe_config(tmp_path, {str(tmp_path / "a/lcdm.npz"): {"model": "lcdm", "n": 10, "seed": 1}},
                         corpus=[str(tmp_path / "b/lcdm.npz")])
    assert main(["simulate", "--config", str(cfg)]) == 2
    assert "is not one of the corpus files" in capsys.readouterr().err


def test_simulate_config_makes_the_missing_corpus_files_and_train_names_them(tmp_path, capsys):
    """Real CAMB (two LCDM spectra): ``train`` names every missing file and the command in one line; ``--plan``
    runs nothing; ``simulate --config`` makes each file from its recipe (the design rows of its seed and box),
    keeps what is present, and resumes from finished chunks."""
    a, b = tmp_path / "a" / "lcdm.npz", tmp_path / "b" / "lcdm.npz"
    block = {str(a): {"model": "lcdm", "n": 2000, "seed": 11, "rows": "7:8"},
             str(b): {"model": "lcdm", "n": 64, "seed": 5, "rows": "3:4", "box": "H0=66:70", "chunk": 1}}
    cfg = _recipe_config(tmp_path, block)
    assert main(["train", str(cfg), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 corpus files not found" in err and str(a) in err and str(b) in err
    assert f"latentinfer simulate --config {cfg}" in err and "2 CAMB spectra" in err

    assert main(["simulate", "--config", str(cfg), "--plan"]) == 0
    out = capsys.readouterr().out
    assert out.count("0/1 chunks") == 2 and "rows 3:4 H0=66:70" in out and not a.exists() and not b.exists()

    assert main(["simulate", "--config", str(cfg), "--workers", "1"]) == 0
    assert "every corpus file of the config is present" in capsys.readouterr().out
    with np.load(a) as fa, np.load(b) as fb:
        assert fa["ok"].all() and fb["ok"].all()
        np.testing.assert_array_equal(fa["params"], sobol_design(BOXES["lcdm"], 2000, 11)[7:8])
        np.testing.assert_array_equal(fb["params"], sobol_design(parse_box("H0=66:70", "lcdm"), 64, 5)[3:4])
        assert 66 <= fb["params"][0, 2] <= 70 and list(fb["rows"]) == [3]
        if (CORPUS / "lcdm.npz").is_file():  # the recipe's row is the shared corpus's row 7
            with np.load(CORPUS / "lcdm.npz") as ref:
                scale = np.abs(ref["TT"][7]).max()
                assert np.abs(fa["TT"][0] - ref["TT"][7]).max() / scale < 1e-4

    # present files are kept; a lost file is remade from its finished chunks without CAMB
    stamp = a.stat().st_mtime_ns
    chunk = next((b.parent / "chunks").glob("*.json"))
    chunk_stamp = chunk.stat().st_mtime_ns
    b.unlink()
    assert main(["simulate", "--config", str(cfg), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "present" in out and "1/1 chunks" in out and "about 0.0 h" in out
    assert main(["simulate", "--config", str(cfg)]) == 0
    assert a.stat().st_mtime_ns == stamp and chunk.stat().st_mtime_ns == chunk_stamp and b.is_file()


def test_simulate_config_and_design_arguments_do_not_mix(tmp_path, capsys):
    cfg = _recipe_config(tmp_path, {str(tmp_path / "a/lcdm.npz"): {"model": "lcdm", "n": 10, "seed": 1}})
    assert main(["simulate", "--config", str(cfg), "--n", "5"]) == 2
    assert "drop --n" in capsys.readouterr().err
    assert main(["simulate", "--model", "lcdm", "--n", "5", "--seed", "1", "--out", str(tmp_path), "--plan"]) == 2
    assert "--plan goes with --config" in capsys.readouterr().err
    no_block = tmp_path / "plain.yaml"
    no_block.write_text("corpus: [x/lcdm.npz]\n")
    assert main(["simulate", "--config", str(no_block)]) == 2
    assert "no simulate: block" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(str(p) for p in [*Path("configs").glob("*.yaml"), *Path("models").glob("*/train.yaml")]))
def test_every_shipped_training_config_says_how_its_corpus_is_made(path):
    """A training config in the repository names the shared corpus or a recipe for each file: nothing it trains on
    is left to memory (the corpus made here does not travel with a clone)."""
    from latentinfer.ive.config import load_train_config
    from latentinfer.simulate.recipes import recipes_from

    cfg = load_train_config(path)
    made = {r.path for r in recipes_from(cfg)}
    for f in [*cfg.corpus, *cfg.lcdm_as_ede]:
        assert f in SHARED or f in made, f"{path}: no recipe for {f}"
    # no two files of one design (model, seed, box) share rows, nor a file and the shared corpus (first n rows)
    recipes = recipes_from(cfg)
    shared = {("ede", 12): 1000, ("lcdm", 11): 2000}
    for i, r in enumerate(recipes):
        if r.box is None:
            assert r.design_rows().min() >= shared.get((r.model, r.seed), 0), f"{r.path} repeats shared corpus rows"
        for q in recipes[i + 1:]:
            if (q.model, q.seed, q.box) == (r.model, r.seed, r.box):
                assert not set(q.design_rows()) & set(r.design_rows()), (r.path, q.path)
