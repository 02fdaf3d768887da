"""A linear-Gaussian problem as files (a decoder bundle and a likelihood folder), shared by the scale-out,
resume and hardening tests. ``y = A z + b`` with ``z ~ N(0, 1)`` and Gaussian data: the posterior is exact."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from latentinfer import save_bundle

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def make_linear_problem(folder: Path, d: int = 2, n: int = 6, seed: int = 0) -> dict:
    """Write ``folder/model`` (an ``mlp`` bundle without hidden layers) and ``folder/lik`` (``type: gaussian``)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, d))
    b = rng.normal(size=n)
    cov = np.diag(rng.uniform(0.5, 1.5, size=n))
    z_true = rng.normal(size=d)
    data = A @ z_true + b + rng.multivariate_normal(np.zeros(n), cov)
    card = {
        "architecture": {"type": "mlp", "hidden": [], "outputs": {"y": n}},
        "latent_names": [f"z{i}" for i in range(d)],
        "description": "linear-Gaussian test model",
    }
    state = {"head.weight": torch.tensor(A, dtype=torch.float32), "head.bias": torch.tensor(b, dtype=torch.float32)}
    model = save_bundle(folder / "model", card, state)
    lik = folder / "lik"
    lik.mkdir(parents=True, exist_ok=True)
    np.savetxt(lik / "data.txt", data)
    np.savetxt(lik / "cov.txt", cov)
    (lik / "likelihood.yaml").write_text("type: gaussian\ndescription: linear test data\ndata: data.txt\ncov: cov.txt\noutput: y\n")
    return {"model": str(model), "likelihood": str(lik), "A": A, "b": b, "cov": cov, "data": data}


def write_config(path: Path, problem: dict, **inference) -> Path:
    inf = {"method": "nuts", "chains": 2, "warmup": 100, "draws": 200, "seed": 3, "jit": False, "progress": False}
    inf.update(inference)
    cfg = {"model": problem["model"], "likelihoods": [problem["likelihood"]], "inference": inf}
    path.write_text(yaml.safe_dump(cfg))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    """Environment for subprocesses: this worktree first on the path, one thread each."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    e.update({k: str(v) for k, v in extra.items()})
    return e
