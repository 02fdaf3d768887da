"""The No-U-Turn sampler (Pyro), chains run as independent tasks in parallel processes."""

from __future__ import annotations

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from ..execution import default_workers, map_tasks
from .base import InferenceMethod, build_posterior, chain_seeds, register_method

__all__ = ["NUTSMethod"]


def _run_chain(task) -> dict:
    """One NUTS chain; top level so that worker processes can unpickle it."""
    analysis, chain, seed, s = task
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic in-process and in workers: same numbers
    try:
        pyro.set_rng_seed(seed)
        kernel = NUTS(
            analysis.model,
            jit_compile=s["jit"],
            ignore_jit_warnings=True,
            target_accept_prob=s["target_accept"],
            max_tree_depth=s["max_tree_depth"],
        )
        mcmc = MCMC(
            kernel,
            num_samples=s["draws"],
            warmup_steps=s["warmup"],
            num_chains=1,
            disable_progbar=not s["progress"],
            mp_context=None,
        )
        mcmc.run()
        draws = {k: v.detach().numpy() for k, v in mcmc.get_samples().items()}
        diverging = np.zeros(s["draws"], dtype=bool)
        for idx in mcmc.diagnostics().get("divergences", {}).get("chain 0", []):
            diverging[int(idx)] = True
        draws["__diverging"] = diverging
        draws["__step_size"] = np.full(s["draws"], float(kernel.step_size))
        return draws
    finally:
        torch.set_num_threads(threads)


@register_method
class NUTSMethod(InferenceMethod):
    name = "nuts"
    settings = ("chains", "warmup", "draws", "seed", "jit", "parallel", "target_accept", "max_tree_depth", "progress")

    def _run(self, analysis, **s):
        seeds = chain_seeds(s["seed"], s["chains"])
        tasks = [(analysis, c, seeds[c], s) for c in range(s["chains"])]
        workers = min(s["chains"], default_workers()) if s["parallel"] else 1
        results = map_tasks(_run_chain, tasks, workers=workers)
        names = analysis.parameter_names
        samples = {n: np.stack([r[n] for r in results]) for n in names}
        stats = {
            "diverging": np.stack([r["__diverging"] for r in results]),
            "step_size": np.stack([r["__step_size"] for r in results]),
        }
        return build_posterior(analysis, samples, method=self.name, settings=s, sample_stats=stats)
