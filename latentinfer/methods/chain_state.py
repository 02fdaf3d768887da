"""Mid-chain checkpoints of a Pyro NUTS/HMC chain, as plain arrays (npz, no pickle).

After warmup a chain is fully described by: the current position (unconstrained), the adapted step size and
inverse mass matrix, the iteration counter, the draws so far and the state of the random number generators
(torch, Python ``random``, numpy). :func:`save_chain_state` writes exactly that; :func:`restore_kernel` puts a
freshly set-up kernel back into that state, so that the continued chain draws the same numbers, bit for bit,
as one that was never interrupted.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write_bytes

__all__ = ["rng_state_arrays", "set_rng_state_arrays", "save_chain_state", "load_chain_state", "restore_kernel", "write_state",
           "checkpoint_seconds"]

_VERSION = 1


def rng_state_arrays() -> dict[str, np.ndarray]:
    """The state of torch's, Python's and numpy's global generators as numpy arrays."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "rng_torch": torch.get_rng_state().numpy().copy(),
        "rng_py_version": np.asarray(version, dtype=np.int64),
        "rng_py_mt": np.asarray(mt, dtype=np.int64),
        "rng_py_gauss": np.asarray(np.nan if gauss is None else gauss, dtype=np.float64),
        "rng_np_keys": np.asarray(keys, dtype=np.uint32),
        "rng_np_pos": np.asarray(pos, dtype=np.int64),
        "rng_np_has_gauss": np.asarray(has_gauss, dtype=np.int64),
        "rng_np_cached": np.asarray(cached, dtype=np.float64),
    }


def set_rng_state_arrays(a: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`rng_state_arrays`."""
    torch.set_rng_state(torch.from_numpy(np.asarray(a["rng_torch"], dtype=np.uint8).copy()))
    gauss = float(a["rng_py_gauss"])
    random.setstate((int(a["rng_py_version"]), tuple(int(x) for x in a["rng_py_mt"]), None if np.isnan(gauss) else gauss))
    np.random.set_state(("MT19937", a["rng_np_keys"], int(a["rng_np_pos"]), int(a["rng_np_has_gauss"]), float(a["rng_np_cached"])))


def save_chain_state(path: str | os.PathLike, kernel, params: dict[str, torch.Tensor], draws: dict[str, list], meta: dict[str, Any]) -> None:
    """Write the state of a chain after warmup: ``params`` (unconstrained position), the kernel's step size,
    inverse mass matrix and counter, the ``draws`` so far (lists of arrays per name) and the RNG states."""
    arrays: dict[str, np.ndarray] = {}
    for name, v in params.items():
        arrays[f"param/{name}"] = v.detach().numpy()
    blocks = []
    for i, (sites, imm) in enumerate(kernel.inverse_mass_matrix.items()):
        blocks.append(list(sites))
        arrays[f"imm/{i}"] = imm.detach().numpy()
    for name, vals in draws.items():
        arrays[f"draws/{name}"] = np.stack(vals) if vals else np.zeros((0,))
    arrays.update(rng_state_arrays())
    info = {
        "version": _VERSION,
        "t": int(kernel._t),
        "warmup": int(kernel._warmup_steps),
        "step_size": float(kernel.step_size),
        "mass_blocks": blocks,
        "n_draws": len(next(iter(draws.values()), [])),
        **meta,
    }
    write_state(path, arrays, info)


def write_state(path: str | os.PathLike, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """One checkpoint file: ``arrays`` and the JSON ``info`` in an npz (no pickle), written atomically; read back by
    :func:`load_chain_state`."""
    buf = io.BytesIO()
    np.savez(buf, **arrays, info=np.asarray(json.dumps(info)))
    atomic_write_bytes(path, buf.getvalue())


def checkpoint_seconds() -> float:
    """Seconds between mid-chain checkpoints: ``$LATENTINFER_CHECKPOINT_SECONDS``, default 30."""
    return float(os.environ.get("LATENTINFER_CHECKPOINT_SECONDS", "30"))


def load_chain_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The saved state, or None when there is none (or it is unreadable: the chain then starts afresh)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        info = json.loads(str(arrays.pop("info")))
    except (OSError, ValueError, KeyError):
        return None
    if info.get("version") != _VERSION:
        return None
    return {"info": info, "arrays": arrays}


def restore_kernel(kernel, state: dict[str, Any], dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    """Put a kernel on which ``setup`` was called back into a saved state; returns ``(params, draws)``.

    Restores the RNG states last, so the next ``kernel.sample`` draws what the interrupted chain would have.
    """
    info, a = state["info"], state["arrays"]
    params = {k.split("/", 1)[1]: torch.as_tensor(v, dtype=dtype) for k, v in a.items() if k.startswith("param/")}
    kernel._adapter.step_size = info["step_size"]
    kernel.mass_matrix_adapter.inverse_mass_matrix = {
        tuple(sites): torch.as_tensor(a[f"imm/{i}"], dtype=dtype) for i, sites in enumerate(info["mass_blocks"])
    }
    kernel._t = info["t"]
    kernel._warmup_steps = info["warmup"]
    kernel.clear_cache()  # the potential and its gradient are recomputed at params (same numbers)
    draws = {k.split("/", 1)[1]: list(v) for k, v in a.items() if k.startswith("draws/") and v.ndim >= 1 and len(v)}
    set_rng_state_arrays(a)
    return params, draws
