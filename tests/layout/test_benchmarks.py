"""``python -m benchmarks`` / ``latentinfer bench``: discovery, one table, results.json with machine info, and a
failing module reported as a failed row rather than a crash."""

from __future__ import annotations

import json
import subprocess

from scale_fixtures import PYTHON, ROOT, env

GOOD = '''
def run(quick=True):
    return [{"benchmark": "good", "metric": "answer", "value": 42.0, "unit": "s", "note": "quick" if quick else "full"}]
'''
BAD = '''
def run(quick=True):
    raise RuntimeError("decoder exploded at ell=2")
'''


def _folder(tmp_path):
    d = tmp_path / "b"
    d.mkdir(parents=True)
    (d / "bench_good.py").write_text(GOOD)
    (d / "bench_bad.py").write_text(BAD)
    (d / "helper.py").write_text("raise SystemExit('not a benchmark: never imported')\n")
    return d


def test_failed_module_is_a_row_and_the_rest_runs(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(ROOT))
    try:
        import benchmarks
    finally:
        sys.path.remove(str(ROOT))
    out = tmp_path / "results.json"
    code = benchmarks.main(["--dir", str(_folder(tmp_path)), "--out", str(out)])
    table = capsys.readouterr().out
    assert code == 1  # something failed
    assert "| good" in table and "42" in table and "FAILED" in table and "decoder exploded at ell=2" in table
    rec = json.loads(out.read_text())
    assert rec["modules"] == {"bad": {"seconds": rec["modules"]["bad"]["seconds"], "status": "failed"}, "good": {"seconds": rec["modules"]["good"]["seconds"], "status": "ok"}}
    assert {"cpu", "cores", "memory_gb", "python", "packages", "date"} <= set(rec["machine"])
    assert rec["machine"]["packages"]["torch"]
    assert [r["metric"] for r in rec["rows"]] == ["FAILED", "answer"]

    assert benchmarks.main(["--dir", str(_folder(tmp_path / "x")), "--only", "good", "--full", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["note"] == "full"
    assert benchmarks.main(["--dir", str(_folder(tmp_path / "y")), "--only", "nonesuch", "--out", str(out)]) == 2


def test_latentinfer_bench_runs_the_same_code(tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run([PYTHON, "-m", "latentinfer", "bench", "--only", "nonesuch", "--out", str(out)], env=env(), capture_output=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "unknown benchmark 'nonesuch'" in done.stderr.decode()
    listing = subprocess.run([PYTHON, "-m", "benchmarks", "--help"], env=env(), capture_output=True, timeout=120, cwd=ROOT)
    assert listing.returncode == 0 and "--only" in listing.stdout.decode()
