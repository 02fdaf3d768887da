"""The two readings of EDE in Planck 2018 side by side (examples/ede_latent.sh): the discovered EDE latent's
posterior against its LCDM value, and f_EDE(z_c) from the physical-space run. Both readings are put in the same
terms: a distance from LCDM in sigma (latent: (mean - LCDM median) / sqrt(sd^2 + LCDM sd^2); f_EDE: mean / sd, with
its 95 % upper limit beside, since f_EDE >= 0 sits on its prior edge) and the verdict "consistent with LCDM" when the
distance is below 2 sigma. They tell the same story when the two verdicts agree.

    python examples/ede_latent_story.py runs/ede_latent/latent runs/ede_latent/physical
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(latent_dir: str, physical_dir: str) -> int:
    lat = json.loads((Path(latent_dir) / "summary.json").read_text())
    refs = lat.get("latent_references") or []
    if not refs:
        print(f"{latent_dir}: the run has no latent_references reading (model card without latent_references.LCDM?)")
        return 2
    from latentinfer.posterior import Posterior

    post = Posterior.from_netcdf(Path(physical_dir) / "posterior.nc")
    f = post.samples("fde_zc")
    f_mean, f_sd = float(f.mean()), float(f.std(ddof=1))
    f_sigma = f_mean / f_sd
    upper = float(np.quantile(f, 0.95))
    r = refs[0]
    lat_ok, phys_ok = abs(r["sigma"]) < 2, f_sigma < 2
    print(f"latent space ({lat['config']['model']}): {r['text']}")
    print(f"physical space ({post.attrs.get('model', 'cmb-ede')}): f_EDE(z_c) = {f_mean:.3f} +- {f_sd:.3f}, "
          f"< {upper:.3f} at 95 %; f_EDE = 0 at {f_sigma:.1f} sigma: "
          + ("consistent with LCDM" if phys_ok else "departs from LCDM"))
    same = lat_ok == phys_ok
    print(f"same story: {'yes' if same else 'NO'} (latent {abs(r['sigma']):.1f} sigma, f_EDE {f_sigma:.1f} sigma; "
          "the verdict is 'consistent with LCDM' below 2 sigma)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
