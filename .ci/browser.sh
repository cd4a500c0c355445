#!/usr/bin/env bash
# CI: install Debian's Chromium and ChromeDriver for the browser test of the server's web page
# (tests/test_browser.py drives /usr/bin/chromium through /usr/bin/chromedriver with selenium).
# Under CI=true that test fails, never skips, when they are missing. Nothing is downloaded at test
# time: Chromium starts with background networking, sync and component updates off.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version
