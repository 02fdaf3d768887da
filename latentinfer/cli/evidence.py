"""``latentinfer evidence RUN [--set KEY=VALUE ...]``: (re)compute the evidence of a finished run from its draws.

The run's own config names the program; the draws are those of ``RUN/posterior.nc``, so nothing is sampled again.
Settings come from the config's ``evidence:`` key (if any), then from ``--set`` (harmonic's settings: ``epochs``,
``blocks``, ``temperature``, ``seed``, ...). The result replaces ``summary.json["evidence"]`` (the previous entry is
kept under ``evidence_previous``), so ``compare``, ``tension`` and ``report`` read it. Flags of the estimator
(kurtosis of the block estimates, effective samples of its terms, samples per block) are printed, one per line.

    latentinfer evidence runs/lcdm_vs_ede/ede
    latentinfer evidence runs/lcdm_vs_ede/ede --set epochs=200 --set temperature=0.7
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("evidence", help="(re)compute the harmonic evidence of a finished run from its draws; "
                                        "updates summary.json")
    p.add_argument("run", help="run folder (posterior.nc, summary.json, config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a harmonic setting (YAML value), e.g. epochs=200; may be repeated")
    p.add_argument("--json", action="store_true", help="print the evidence entry as JSON")
    p.set_defaults(func=_evidence)


def parse_overrides(items: list[str]) -> dict:
    """``["epochs=200", "hidden_size=[64, 64]"]`` -> ``{"epochs": 200, "hidden_size": [64, 64]}`` (YAML values)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def _evidence(args) -> int:
    from ..config import evidence_request, validate_config
    from ..io import write_json
    from ..rundir import evidence_lines, load_run
    from ..runner import build_analysis, evidence_record

    run = load_run(args.run)
    cfg = validate_config(run.config, str(Path(args.run) / "config.yaml"))
    base = evidence_request(cfg) or ("harmonic", {})
    method, settings = base[0], {**base[1], **parse_overrides(args.overrides)}
    request = evidence_request({"evidence": {"method": method, **settings}}, "--set")
    record = evidence_record(build_analysis(cfg), run.posterior, request, seed=int(cfg["inference"].get("seed", 0)))
    summary = dict(run.summary)
    if summary.get("evidence") is not None:
        summary["evidence_previous"] = summary["evidence"]
    summary["evidence"] = {**record, "command": "latentinfer evidence " + " ".join(f"--set {o}" for o in args.overrides)}
    write_json(Path(args.run) / "summary.json", summary)
    if args.json:
        print(json.dumps(summary["evidence"], indent=2, default=str))
        return 0
    print("\n".join(evidence_lines(summary["evidence"])))
    return 0
