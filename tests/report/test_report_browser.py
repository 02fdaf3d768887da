"""The report in a real browser: headless Chromium (Debian packages chromium + chromium-driver) via selenium.

Checks that every <img> decoded (naturalWidth > 0), that the console shows no SEVERE entries (errors), and saves
a full-page screenshot in the test's tmp dir and in tests/artifacts/ (gitignored). Skips, saying why, when the
browser is not installed (``scripts/install-browser.sh`` installs it).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _linear_models import run_config, split_problem, write_exact_run, write_problem_files  # noqa: E402

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(f"headless Chromium not installed (chromium: {chromium}, chromedriver: {driver}); run scripts/install-browser.sh")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.skip(f"selenium not importable: {exc}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=opts)
    except Exception as exc:  # the driver could not start Chromium here (sandbox, missing libraries)
        pytest.skip(f"Chromium did not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from latentinfer.report import write_report
    from latentinfer.tension import tension, write_tension

    root = tmp_path_factory.mktemp("browser")
    prob = split_problem(d=3, n=80, seed=3, offset=[0.6, 0.0, -0.4])
    model, liks = write_problem_files(root, prob)
    runs = {}
    for key, ls in (("A", [liks["A"]]), ("B", [liks["B"]]), ("AB", [liks["A"], liks["B"]])):
        cfg = run_config(model, ls)
        cfg["name"] = key
        write_exact_run(cfg, root / f"run{key}", n=2000, extra={"evidence": {"ln_z": {"A": -40.2, "B": -41.0, "AB": -82.5}[key], "ln_z_err": 0.05, "method": "fixture value (not computed)"}})
        runs[key] = root / f"run{key}"
    res = tension(runs["A"], runs["B"], runs["AB"])
    from latentinfer.rundir import load_run

    a, b = (load_run(runs[k]).posterior for k in "AB")
    import numpy as np

    write_tension(res, root / "tension", np.stack([a.samples(n) for n in res.names], -1), np.stack([b.samples(n) for n in res.names], -1))
    return write_report([runs["A"], runs["AB"], root / "tension"], root / "report.html")


def test_report_renders_in_chromium(report, tmp_path):
    driver = _browser()
    try:
        driver.get(report.resolve().as_uri())
        imgs = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        assert len(imgs) >= 8, f"expected trace, rank, corner, PPC and tension figures, found {len(imgs)} images"
        broken = [alt for complete, width, alt in imgs if not complete or width <= 0]
        assert not broken, f"images that did not decode: {broken}"
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, f"console errors: {severe}"
        external = driver.execute_script(
            "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))"
            ".filter(u => !u.startsWith('data:') && !u.startsWith('#'))"
        )
        assert external == [], f"the report refers to outside resources: {external}"
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1400, min(height + 40, 30000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "report.png")
    finally:
        driver.quit()
