#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages chromium + chromium-driver) for the browser test
# tests/report/test_report_browser.py. Idempotent: does nothing when both are present. Needs root (CI containers);
# otherwise it says why and exits 0, and the browser test skips with that reason.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if (have chromium || have chromium-browser) && have chromedriver; then
  echo "install-browser: chromium and chromedriver already installed"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-browser: not root, cannot apt-get install chromium chromium-driver; the browser test will skip"
  exit 0
fi
if ! have apt-get; then
  echo "install-browser: no apt-get on this system; install Chromium and chromedriver by hand; the browser test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy chromium chromium-driver 2>/dev/null | grep -q "Candidate: [0-9]"; then
  apt-get update -qq || true
fi
if apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
  echo "install-browser: installed $(chromium --version 2>/dev/null || echo chromium)"
else
  echo "install-browser: apt-get install chromium chromium-driver failed; the browser test will skip"
fi
exit 0
