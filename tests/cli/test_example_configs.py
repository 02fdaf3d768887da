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
    assert cfg["model"] in ("cmb-lcdm", "cmb-ede", "cmb-ede-ive") and cfg["report"] is True
    names = {item["name"] for item in cfg["likelihoods"]}
    assert names <= {"planck2018-plik-lite", "planck2018-lowl-tt", "spt3g-2018-ttteee"}
    if cfg["space"] == "physical":
        assert cfg["priors"]["tau"] == {"normal": [0.0506, 0.0086]}  # lowE alone


@pytest.mark.parametrize("script", ["planck_vs_spt.sh", "lcdm_vs_ede.sh", "coverage_planck.sh", "ede_latent.sh"])
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


@pytest.mark.parametrize("f_mean,latent_mean,same", [(0.03, -0.1, True), (0.12, -0.1, False), (0.03, 1.5, False),
                                                     (0.12, 1.5, True)])
def test_ede_latent_story_compares_the_two_readings(tmp_path, capsys, f_mean, latent_mean, same):
    """examples/ede_latent_story.py puts the latent reading and f_EDE in the same terms and says whether they agree;
    built to disagree in two of the four cases."""
    from latentinfer.bundle.references import reference_readings
    from latentinfer.posterior import Posterior
    from latentinfer.runner import write_run

    sys.path.insert(0, str(EXAMPLES))
    import ede_latent_story as story

    rng = np.random.default_rng(1)
    card = {"latent_names": ["z6"], "latent_references": {"LCDM": {"parameter": "fde_zc",
                                                                   "latents": {"z6": {"median": -0.18, "sd": 0.09}}}}}
    z6 = rng.normal(latent_mean, 0.5, size=(2, 2000))
    lat = Posterior.from_arrays({"z6": z6})
    write_run(lat, {"model": "cmb-ede-ive", "space": "latent"}, tmp_path / "latent", wall=0.0,
              extra={"latent_references": reference_readings(card, {"z6": z6})})
    phys = Posterior.from_arrays({"fde_zc": np.abs(rng.normal(f_mean, 0.03, size=(2, 2000)))})
    write_run(phys, {"model": "cmb-ede", "space": "physical"}, tmp_path / "physical", wall=0.0)
    assert story.main(str(tmp_path / "latent"), str(tmp_path / "physical")) == 0
    out = capsys.readouterr().out
    assert ("same story: yes" in out) == same and ("same story: NO" in out) == (not same)
    write_run(lat, {"model": "cmb-lcdm", "space": "latent"}, tmp_path / "plain", wall=0.0)
    assert story.main(str(tmp_path / "plain"), str(tmp_path / "physical")) == 2
