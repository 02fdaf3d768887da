"""``latentinfer loglike`` and the theory-file reader: good files give the likelihood's chi2, bad ones exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import latentinfer as li
from latentinfer.cli import main
from latentinfer.errors import LatentInferError
from latentinfer.likelihoods.theory import read_theory_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "camb_lcdm_planck2018.txt"


@pytest.fixture(scope="module")
def table():
    return np.loadtxt(FIXTURE)


def write(path: Path, tab: np.ndarray, header: str = "ell TT TE EE PP") -> Path:
    np.savetxt(path, tab, header=header)
    return path


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_loglike_matches_the_likelihood(capsys):
    code, out, err = run_cli(["loglike", "planck2018-plik-lite", "--theory", str(FIXTURE)], capsys)
    assert code == 0, err
    res = json.loads(out)
    lik = li.load_likelihood("planck2018-plik-lite")
    tab = np.loadtxt(FIXTURE)
    th = {k: torch.tensor(tab[:, i]) for i, k in enumerate(["TT", "TE", "EE"], start=1)}
    chi2 = float(lik.chi2(th, {"A_planck": torch.tensor(1.0, dtype=torch.float64)}))  # prior centre
    assert res == {"loglike": pytest.approx(-0.5 * chi2, rel=1e-12), "chi2": pytest.approx(chi2, rel=1e-12), "n_data": 613}


def test_set_and_option(capsys):
    code, out, _ = run_cli(["loglike", "planck2018-plik-lite", "--theory", str(FIXTURE), "--option", "spectra=TT",
                            "--set", "A_planck=1.002"], capsys)
    assert code == 0
    res = json.loads(out)
    assert res["n_data"] == 215
    code2, out2, _ = run_cli(["loglike", "planck2018-plik-lite", "--theory", str(FIXTURE), "--option", "spectra=TT"], capsys)
    assert json.loads(out2)["chi2"] != res["chi2"]  # the --set value was used
    code, out, _ = run_cli(["loglike", "act-dr6-lensing", "--theory", str(FIXTURE)], capsys)
    assert code == 0 and json.loads(out)["n_data"] == 10


@pytest.mark.parametrize(
    "make, argv_extra, name, match",
    [
        (lambda t: t[:1500], [], "planck2018-plik-lite", "TT up to ell = 2508"),  # ell range too short
        (lambda t: np.where(np.arange(t.shape[0])[:, None] == 100, np.nan, t), [], "planck2018-plik-lite", "NaN"),
        (lambda t: t[:, :3], [], "planck2018-plik-lite", "3 columns"),
        (lambda t: np.column_stack([t, t[:, 1]]), [], "planck2018-plik-lite", "6 columns"),
        (lambda t: np.column_stack([t[:, :1], t[:, 1:] * 2 * np.pi / (t[:, :1] * (t[:, :1] + 1))]), [],
         "planck2018-plik-lite", "looks like C_ell"),
        (lambda t: t[:, :4], [], "planck2018-lensing", "needs \\['PP'\\]"),  # no PP column
        (lambda t: t[1:], [], "planck2018-lowl-tt", "ell must run 2"),  # starts at ell 3
        (lambda t: t, ["--set", "A_planck=abc"], "planck2018-plik-lite", "not a number"),
        (lambda t: t, ["--set", "Acal=1"], "planck2018-plik-lite", "Acal"),
        (lambda t: t, ["--option", "colour=TT"], "planck2018-plik-lite", "'colour'"),
        (lambda t: t, ["--option", "spectra=TB"], "planck2018-plik-lite", "TB"),
        (lambda t: t, [], "no-such-likelihood", "no-such-likelihood"),
    ],
)
def test_bad_input_exits_2_with_one_line(make, argv_extra, name, match, table, tmp_path, capsys):
    path = write(tmp_path / "theory.txt", make(table.copy()))
    code, out, err = run_cli(["loglike", name, "--theory", str(path), *argv_extra], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latentinfer: error:")
    assert __import__("re").search(match, lines[0]), lines[0]


@pytest.mark.parametrize(
    "content, match",
    [
        ("# only a comment\n", "no data rows"),
        ("2 1 2 3\n3 1 two 3\n", "non-numeric"),
        ("2 1 2 3\n3 1 2\n", "3 columns, earlier rows have 4"),
        ("2.5 1 2 3\n", "ell must run"),
        ("2 1 2 inf\n", "NaN/inf"),
    ],
)
def test_reader_rejects_bad_text(content, match, tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(content)
    with pytest.raises(LatentInferError, match=match):
        read_theory_file(p)


def test_reader_rejects_binary_and_missing(tmp_path):
    p = tmp_path / "b.txt"
    p.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(LatentInferError, match="cannot read it as text"):
        read_theory_file(p)
    with pytest.raises(LatentInferError, match="not found"):
        read_theory_file(tmp_path / "missing.txt")
    with pytest.raises(LatentInferError, match="not found"):
        read_theory_file(tmp_path)  # a folder


def test_reader_round_trip(table, tmp_path):
    th = read_theory_file(write(tmp_path / "t.txt", table))
    assert list(th) == ["ell", "TT", "TE", "EE", "PP"]
    np.testing.assert_array_equal(th["ell"], np.arange(2, 3201))
    np.testing.assert_array_equal(th["TT"], table[:, 1])
    th4 = read_theory_file(write(tmp_path / "t4.txt", table[:, :4]))
    assert "PP" not in th4


def test_cli_subprocess_exit_code(tmp_path):
    """The real console path: bad input gives exit status 2 and one line (one interpreter start, ~10 s here)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    bad = tmp_path / "bad.txt"
    bad.write_text("2 1 2\n")
    res = subprocess.run([sys.executable, "-m", "latentinfer", "loglike", "planck2018-lowl-tt", "--theory", str(bad)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "3 columns" in res.stderr and "Traceback" not in res.stderr
