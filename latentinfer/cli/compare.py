"""``latentinfer compare RUN_A RUN_B``: ln Z of two runs, their ln Bayes factor and its Jeffreys-scale reading.

Each run folder must hold a ``summary.json`` with an ``evidence`` entry (set ``evidence: harmonic`` in the run
config). ln B_AB = ln Z_A - ln Z_B; its error adds the two runs' errors in quadrature.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import LatentInferError


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare the evidence of two runs: ln Z each, ln B with error, Jeffreys reading")
    p.add_argument("run_a", help="run folder A (summary.json with an evidence entry)")
    p.add_argument("run_b", help="run folder B")
    p.add_argument("--json", action="store_true", help="print a JSON record instead of text")
    p.set_defaults(func=_compare)


def read_evidence(run: str | Path):
    """The :class:`~latentinfer.evidence.EvidenceResult` recorded in ``run/summary.json``, and the summary."""
    from ..evidence import EvidenceResult
    from ..rundir import read_evidence as _evidence_entry
    from ..rundir import read_json_file

    path = Path(run) / "summary.json"
    summary = read_json_file(path)  # "missing file: .../summary.json" or "corrupt file ..."
    if not isinstance(summary, dict):
        raise LatentInferError(f"corrupt file {path}: expected a JSON object")
    ev = _evidence_entry(summary.get("evidence"), str(path))
    if ev is None or not math.isfinite(ev["ln_z_err"]):
        raise LatentInferError(f"compare: {path} has no evidence; rerun with 'evidence: harmonic' in the config")
    return EvidenceResult(ev["ln_z"], ev["ln_z_err"], str(ev.get("method", "?"))), summary


def _compare(args) -> int:
    from ..evidence import bayes_factor, jeffreys_reading

    (a, sa), (b, sb) = read_evidence(args.run_a), read_evidence(args.run_b)
    data_a = [lik.get("name") for lik in sa.get("config", {}).get("likelihoods", [])]
    data_b = [lik.get("name") for lik in sb.get("config", {}).get("likelihoods", [])]
    ln_b, err = bayes_factor(a, b)
    name_a, name_b = Path(args.run_a).name or str(args.run_a), Path(args.run_b).name or str(args.run_b)
    reading = jeffreys_reading(ln_b, name_a, name_b)
    from ..rundir import evidence_flags

    warning = None
    if data_a != data_b:
        warning = f"the runs use different likelihoods ({data_a} vs {data_b}): a Bayes factor needs the same data"
    flagged = {str(path): evidence_flags(s.get("evidence")) for path, s in ((args.run_a, sa), (args.run_b, sb))}
    flagged = {k: v for k, v in flagged.items() if v}
    if args.json:
        record = {
            "run_a": {"path": str(args.run_a), **a.to_dict()},
            "run_b": {"path": str(args.run_b), **b.to_dict()},
            "ln_b": ln_b,
            "ln_b_err": err,
            "jeffreys": reading,
            "warning": warning,
            "flagged": flagged,
        }
        print(json.dumps(record, indent=2))
        return 0
    width = max(len(name_a), len(name_b))
    print(f"{name_a:<{width}}  ln Z = {a.ln_z:.3f} +- {a.ln_z_err:.3f}  ({a.method})")
    print(f"{name_b:<{width}}  ln Z = {b.ln_z:.3f} +- {b.ln_z_err:.3f}  ({b.method})")
    print(f"ln B = ln Z_A - ln Z_B = {ln_b:.3f} +- {err:.3f}")
    print(f"Jeffreys scale: {reading}")
    if warning:
        print(f"warning: {warning}")
    for path, flags in flagged.items():
        print(f"warning: the evidence of {path} is flagged ({'; '.join(flags)}): take ln B's error as a lower bound; "
              f"'latentinfer evidence {path} --set KEY=VALUE' refits it from the same draws")
    return 0
