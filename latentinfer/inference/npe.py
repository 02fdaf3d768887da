"""Neural posterior estimation as a run method: ``inference: {method: npe, num_simulations: ..., rounds: ...}``.

The same Pyro program is the simulator (prior -> forward model -> each likelihood's ``simulate``); sbi trains
the estimator (see :func:`latentinfer.amortized.train`). With ``rounds > 1`` the simulations are focused on the
config's data (truncated sequential NPE). The run's posterior is one chain of ``num_samples`` draws.
"""

from __future__ import annotations

from .base import InferenceMethod, register_method


@register_method
class NPEMethod(InferenceMethod):
    name = "npe"
    settings = ("num_simulations", "rounds", "embedding", "ensemble", "num_samples", "seed", "progress")

    def _run(self, analysis, **s):
        observed = {lik.name: lik.data for lik in analysis.likelihoods}
        amo = analysis.train_sbi(
            "npe",
            num_simulations=s["num_simulations"],
            seed=s["seed"],
            observed=observed,
            rounds=s["rounds"],
            embedding=s["embedding"],
            ensemble=s["ensemble"],
            progress=s["progress"],
        )
        post = amo.posterior(observed, num_samples=s["num_samples"], seed=s["seed"])
        for key in ("truncation", "simulations_per_round", "epochs", "score_compression", "pca_compression"):
            if amo.config.get(key) is not None:
                post.attrs[f"npe_{key}"] = str(amo.config[key])
        return post
