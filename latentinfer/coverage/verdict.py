"""One verdict from the coverage diagnostics, each diagnostic's reading, and the next step the evidence supports.

:func:`coverage_verdict` takes the ``check_*`` results of :mod:`latentinfer.coverage.diagnostics` (keyed
``sbc``, ``tarp``, ``hpd``, ``density_rank``, ``tarp_local``; any subset) and the inference method's name, and
returns::

    {"overall": "calibrated" | "over-confident" | "under-confident" | "biased" | "miscalibrated",
     "acceptable": bool,        # calibrated, or conservative only (flagged)
     "joint_only": bool,        # marginal SBC passes while a joint statistic fails
     "readings": {name: reading}, "evidence": [str], "next_step": str | None}

Readings. SBC: a failing parameter with its mean rank off 1/2 is "biased", with a U-shaped histogram
"over-confident", with a hump "under-confident". HPD: coverage below the band at some level "over-confident",
only above it "under-confident", both "miscalibrated" (wrong shape). Density rank and local TARP: the truth
less dense than / further out than the draws is "over-confident", the opposite "under-confident". TARP with
references from the prior box: the ATC sign does not separate bias from over-confidence there, so a failure
reads "miscalibrated". A failing check with no side reads "miscalibrated".

Overall, by precedence: "biased" if marginal SBC finds a shifted mean rank (a bias also makes every joint
statistic read over-confident, so it explains them); else "over-confident" if any check fails on that side;
else "under-confident" (conservative: acceptable, flagged) if some check reads so and every other failing check
is either under-confident or prior-box TARP (which fails on both sides); else "miscalibrated" if any check
fails; else "calibrated". Over-confidence is the dangerous side, so it wins over a conflicting
under-confident reading.

``joint_only``: marginal SBC passes while a joint statistic (HPD, density rank, local TARP) fails. Then an
"under-confident" overall becomes "miscalibrated": with the right marginal variances, a covariance that differs
from the true one differs by a zero-trace matrix, so some direction is too narrow even when the joint
statistics average to "too wide" (the independent-components case of tests/coverage/test_coverage_joint.py reads so in
about 1 study in 9 at N = 1000). The price: a merely conservative posterior whose marginal SBC lacks the power
to see it is reported as miscalibrated rather than acceptable.
"""

from __future__ import annotations

__all__ = ["coverage_verdict", "READINGS", "next_step"]

READINGS = ("calibrated", "over-confident", "under-confident", "biased", "miscalibrated")
_JOINT = ("hpd", "density_rank", "tarp_local")

_SBI = ("npe", "nle", "nre")

# next steps: method family -> overall reading -> text
_STEPS = {
    "npe": {
        "over-confident": (
            "NPE is over-confident: train on more simulations (--simulations), use an ensemble of density "
            "estimators (sbi setting ensemble: 5), or importance-weight the NPE draws against the likelihood "
            "(weights p(x | theta) p(theta) / q(theta | x)); check the final result against NUTS on the observed data."
        ),
        "biased": (
            "NPE is biased: check the embedding (a learned or PCA summary that loses information about a parameter "
            "shifts it; try embedding: null or more components) and that the training simulator matches the data "
            "model (noise, priors, parameter transforms); more simulations do not remove a bias from a wrong simulator."
        ),
        "miscalibrated": (
            "NPE has the wrong shape (tails or correlations): a more flexible estimator (density_estimator: nsf, more "
            "num_transforms / hidden_features), more simulations, an ensemble; compare with NUTS on a few data sets."
        ),
        "under-confident": (
            "NPE is conservative (credible regions too wide): acceptable, flagged; more simulations would tighten it."
        ),
        "joint": (
            "The marginals are right and the joint is not (correlations or degenerate directions): the flow misses the "
            "dependence; give it more capacity (num_transforms, hidden_features, density_estimator: nsf) and more "
            "simulations, or importance-weight against the likelihood."
        ),
    },
    "vi": {
        "over-confident": (
            "VI is over-confident (the usual failure of a variational fit): use a richer guide (guide: "
            "multivariate_normal or flow) and more steps, or run NUTS."
        ),
        "biased": (
            "VI is biased: check convergence (more steps, a smaller lr; the ELBO trace should be flat), then that the "
            "simulated data and the inference model agree (likelihood, noise, priors)."
        ),
        "miscalibrated": (
            "VI has the wrong shape: a Gaussian guide cannot follow skewed or curved posteriors; use guide: flow, or NUTS."
        ),
        "under-confident": "VI is conservative: acceptable, flagged.",
        "joint": (
            "The marginals are right and the joint is not: guide: normal is mean-field (no correlations) by "
            "construction, so use guide: multivariate_normal or flow; a full-rank guide that fails this way has a "
            "wrong scale matrix, so fit it longer with less gradient noise (more steps, more particles, a smaller lr), "
            "or use guide: flow or NUTS."
        ),
    },
    "mcmc": {
        "over-confident": (
            "{method} should be exact: over-confidence means the chains did not explore the posterior; check R-hat, "
            "ESS and divergences, run longer (warmup, draws), more chains; for NUTS raise target_accept or use dense_mass."
        ),
        "biased": (
            "{method} should be exact: a bias means the data were simulated from a model that differs from the one "
            "inference uses (check the simulator, likelihood, noise and priors against each other), or the chains are "
            "stuck (R-hat)."
        ),
        "miscalibrated": (
            "{method} should be exact: check convergence (R-hat, ESS) and that the simulated data follow the inference model."
        ),
        "under-confident": (
            "{method} is conservative: acceptable, flagged; unexpected for an exact sampler, so check that the "
            "inference model is not noisier than the simulator."
        ),
        "joint": (
            "The marginals are right and the joint is not: the sampler moves poorly along a correlated direction; "
            "use dense_mass (NUTS), run longer, and check ESS per parameter."
        ),
    },
}


def _family(method: str) -> str:
    m = method.lower()
    if m in _SBI:
        return "npe"
    if m == "vi":
        return "vi"
    return "mcmc"  # nuts, emcee, anything sampling the exact target


def _reading(name: str, check: dict) -> str:
    r = check.get("reading")
    if name == "tarp":  # prior-box references: the ATC side does not tell bias from over-confidence
        return "calibrated" if check["pass"] else "miscalibrated"
    if r in READINGS:
        if r == "calibrated" and not check["pass"]:
            return "miscalibrated"
        return r
    return "calibrated" if check["pass"] else "miscalibrated"


def next_step(overall: str, method: str, joint_only: bool = False) -> str | None:
    """The next step for an ``overall`` reading of ``method`` (None when calibrated)."""
    if overall == "calibrated":
        return None
    steps = _STEPS[_family(method)]
    text = steps["joint"] if joint_only and overall in ("over-confident", "miscalibrated") else steps[overall]
    return text.format(method=method.upper() if method.lower() == "nuts" else method)


def coverage_verdict(diagnostics: dict[str, dict], method: str) -> dict:
    """One overall verdict and each diagnostic's reading; see the module docstring for the rules."""
    readings = {name: _reading(name, chk) for name, chk in diagnostics.items()}
    evidence = []
    sbc = diagnostics.get("sbc")
    sbc_biased = False
    if sbc is not None:
        for p, v in sbc.get("per_parameter", {}).items():
            if v.get("reading") == "biased":
                sbc_biased = True
                evidence.append(f"sbc: {p} biased, mean rank {v['mean_rank']:.3f} (z {v['z_mean']:+.1f}; {v['direction']})")
            elif not v["pass"]:
                evidence.append(f"sbc: {p} {v.get('reading', 'fails')} (KS p {v['ks_pvalue']:.2g})")
    for name, chk in diagnostics.items():
        if name == "sbc" or readings[name] == "calibrated":
            continue
        if name == "hpd":
            off = [f"{c}: {v['coverage']:.3f}" for c, v in chk["levels"].items() if v["reading"] != "calibrated"]
            evidence.append(f"hpd: {readings[name]} (coverage at level {', '.join(off)})")
        elif "atc" in chk:
            evidence.append(f"{name}: {readings[name]} (KS p {chk['ks_pvalue']:.2g}, ATC {chk['atc']:+.3f})")
        else:
            evidence.append(f"{name}: {readings[name]} (KS p {chk['ks_pvalue']:.2g}, mean rank {chk.get('mean_rank', float('nan')):.3f})")

    joint_only = bool(sbc is not None and sbc["pass"] and any(n in diagnostics and not diagnostics[n]["pass"] for n in _JOINT))
    failing = {r for n, r in readings.items() if not diagnostics[n]["pass"]}
    # prior-box TARP fails on either side without saying which: it confirms a sided reading, never overrides it
    sided = {r for n, r in readings.items() if n != "tarp"}
    sided_failing = {r for n, r in readings.items() if n != "tarp" and not diagnostics[n]["pass"]}
    if sbc_biased:
        overall = "biased"
    elif "over-confident" in failing or "biased" in failing:
        overall = "over-confident"
    elif "under-confident" in sided and not sided_failing - {"under-confident"}:
        overall = "under-confident"
    elif failing:
        overall = "miscalibrated"
    else:
        overall = "calibrated"
    if joint_only and overall == "under-confident":
        # right marginals and a joint that reads too wide: equal marginal variances and a different covariance
        # leave a direction where the truth spreads more than the draws (the difference has zero trace)
        overall = "miscalibrated"
        evidence.append("marginal SBC passes and a joint statistic reads under-confident: the joint is wrong, not just wide")
    return {
        "overall": overall,
        "acceptable": overall in ("calibrated", "under-confident"),
        "joint_only": joint_only,
        "method": method,
        "readings": readings,
        "evidence": evidence,
        "next_step": next_step(overall, method, joint_only),
    }
