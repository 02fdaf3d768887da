"""Scans of the unsupervised IVE (issue 20, item 2): the selection rule, a tiny end-to-end scan on a corpus slice,
and bad input (beta or latent count out of range, too few MI rows) as one line with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from latentinfer.cli import main
from latentinfer.ive.config import TrainConfig
from latentinfer.ive.discover import BETA_TOLERANCE, DIM_TOLERANCE, choose_beta, choose_dim, run_discovery, scan_mi_settings, scan_table

from ive_helpers import needs_corpus, tiny_config, write_slice

UNSUP = dict(mode="unsupervised", latent_basis="none", beta=1e-4, beta_start=1e-7)


def test_beta_rule_takes_the_largest_beta_within_the_accuracy_tolerance():
    pts = [{"beta": b, "dchi2_median": m} for b, m in ((1e-6, 0.07), (1e-5, 0.08), (1e-4, 0.139), (1e-3, 0.141), (1e-2, 3.0))]
    assert choose_beta(pts) == 1e-4  # 0.139 <= 2 x 0.07 < 0.141
    assert BETA_TOLERANCE == 2.0
    pts[3]["dchi2_median"] = 0.14
    assert choose_beta(pts) == 1e-3


def test_dim_rule_takes_the_smallest_d_within_the_tolerance():
    med = {3: 1.0, 4: 0.5, 5: 0.2, 6: 0.12, 7: 0.1, 8: 0.11}
    pts = [{"latent_dim": d, "dchi2_median": m} for d, m in med.items()]
    assert DIM_TOLERANCE == 1.25
    assert choose_dim(pts) == 6  # 0.12 <= 1.25 x 0.1
    pts[3]["dchi2_median"] = 0.126
    assert choose_dim(pts) == 7


@needs_corpus
def test_tiny_scan_end_to_end(tmp_path):
    s = write_slice(tmp_path / "s.npz", n=200, n_bad=0)
    cfg = TrainConfig(**tiny_config(s, **UNSUP, max_epochs=6))
    res = run_discovery(cfg, tmp_path / "scan", betas=(1e-5, 1e-2), d_beta=3, dims=(2, 3), verbose=False, min_mi_rows=150,
                        settings=scan_mi_settings(2))
    saved = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert saved["chosen_beta"] in (1e-5, 1e-2) and saved["chosen_dim"] in (2, 3)
    assert len(saved["beta_scan"]["points"]) == 2 and len(saved["dim_scan"]["points"]) == 2
    p = saved["beta_scan"]["points"][0]
    assert np.array(p["mi"]["latent_latent"], dtype=float).shape == (3, 3)
    assert np.array(p["mi"]["latent_parameter"], dtype=float).shape == (3, 6)
    assert p["mi_rows"] == 200 and p["dchi2_n"] == 20
    # a strong beta switches latents off: KL per latent shrinks
    hi = saved["beta_scan"]["points"][1]
    assert sum(hi["kl_per_latent"]) < sum(p["kl_per_latent"])
    assert (tmp_path / "scan" / "scan.png").is_file() and res["rule"]["beta"]
    assert "| beta" in scan_table(tmp_path / "scan")
    assert len(list((tmp_path / "scan" / "weights").glob("*.safetensors"))) == 3


@needs_corpus
@pytest.mark.parametrize("args,match", [(["--betas", "1e-5,5"], "beta 5.0 outside"), (["--dims", "3,40"], "latent count 40"),
                                        ([], "fewer than the 2000")])
def test_bad_scan_input_is_one_line_exit_2(tmp_path, capsys, args, match):
    s = write_slice(tmp_path / "s.npz", n=200, n_bad=0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(s, **UNSUP)))
    assert main(["discover", str(cfg), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]
