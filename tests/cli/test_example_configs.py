"""The shipped examples: configs validate, scripts parse, and the Planck 2018 comparison script reads a run.

(The examples themselves need the shipped decoders and likelihoods and run for minutes: not part of the
default tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_configs_validate(path):
    from latentinfer.config import load_config

    cfg = load_config(path)
    assert cfg["model"] in ("cmb-lcdm", "cmb-ede") and cfg["report"] is True
    names = {item["name"] for item in cfg["likelihoods"]}
    assert names <= {"planck2018-plik-lite", "planck2018-lowl-tt", "spt3g-2018-ttteee"}
    if cfg["space"] == "physical":
        assert cfg["priors"]["tau"] == {"normal": [0.0506, 0.0086]}  # lowE alone


@pytest.mark.parametrize("script", ["planck_vs_spt.sh", "lcdm_vs_ede.sh", "coverage_planck.sh"])
def test_example_scripts_parse_and_name_existing_configs(script):
    subprocess.run(["bash", "-n", str(EXAMPLES / script)], check=True)
    text = (EXAMPLES / script).read_text()
    for token in text.split():
        if token.startswith("examples/") and token.endswith(".yaml"):
            assert (ROOT / token).is_file(), token


def test_compare_planck2018_prints_shifts(tmp_path, capsys):
    from latentinfer.posterior import Posterior
    from latentinfer.runner import write_run

    sys.path.insert(0, str(EXAMPLES))
    import compare_planck2018 as cmp

    rng = np.random.default_rng(0)
    samples = {k: rng.normal(mu + 0.1 * sd, sd, size=(2, 500)) for k, (mu, sd) in cmp.PUBLISHED.items()}
    samples["H0"] = rng.normal(67.27 + 1.2, 0.6, size=(2, 500))  # 2 sd off
    post = Posterior.from_arrays(samples, attrs={"config": json.dumps({"model": "cmb-lcdm", "space": "physical"})})
    write_run(post, {"model": "cmb-lcdm", "likelihoods": [{"name": "planck2018-plik-lite"}], "space": "physical"}, tmp_path / "run", wall=0.0)
    assert cmp.main([str(tmp_path / "run"), "--max-shift", "1.0"]) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("H0"))
    assert abs(float(line.split()[-2]) - 2.0) < 0.3
    assert cmp.main([str(tmp_path / "missing")]) == 2
