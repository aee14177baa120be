"""Headless Chromium for the page tests: Debian's chromium and chromedriver, driven by
Selenium, offline.

`make test` installs /usr/bin/chromium and /usr/bin/chromedriver (`make browser`). Both
paths are given to Selenium, so Selenium Manager (which would look for, and download,
a browser and a driver) never runs: `SE_OFFLINE=true` is set in case it did, and the
fixture makes any call to it an error. Chromium runs with its background networking,
component updates and sync off, and resolves no host name but 127.0.0.1 and localhost,
so the only requests it makes are the loopback pages' own (checked with strace and in a
network namespace that has only a loopback device).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent: `make browser` (or `apt-get install chromium "
           "chromium-driver`) installs it; `make test` always does")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000",
         # Even so, Chromium 156 looks up accounts.google.com, clients2.google.com,
         # update.googleapis.com, content-autofill.googleapis.com and
         # optimizationguide-pa.googleapis.com (seen with strace). No name resolves here:
         # only the loopback pages are reachable, and no DNS query leaves the machine.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
         "--disable-extensions", "--disable-default-apps", "--disable-domain-reliability",
         "--disable-client-side-phishing-detection", "--no-pings",
         "--disable-features=OptimizationHints,OptimizationHintsFetching,"
         "OptimizationGuideModelDownloading,AutofillServerCommunication,Translate,"
         "MediaRouter,CertificateTransparencyComponentUpdater"]


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Iterator[Any]:
    """One headless Chromium for the whole session, with its console and network logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    if not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMEDRIVER} is absent: apt-get install chromium-driver "
                    "(make test does this)")

    def refuse(self: Any, *args: Any) -> None:
        raise AssertionError("Selenium Manager was called: it would download a driver")

    patch = pytest.MonkeyPatch()
    patch.setenv("SE_OFFLINE", "true")
    patch.setattr(SeleniumManager, "binary_paths", refuse)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        patch.undo()


def load(driver: Any, url: str) -> None:
    """Open `url` with empty logs, so what the helpers report is this page's."""
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(url)


def console_errors(driver: Any) -> list[str]:
    """The console's SEVERE messages (errors, uncaught exceptions, failed loads) since the
    last read; reading empties the browser log."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def failed_requests(driver: Any) -> list[str]:
    """Requests since the last read that failed (Network.loadingFailed) or were answered
    with status >= 400, as 'URL: why'; reading empties the performance log."""
    urls, failed = {}, []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message["method"], message.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            response = params["response"]
            failed.append(f"{response['url']}: HTTP {response['status']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = urls.get(params["requestId"], params["requestId"])
            failed.append(f"{url}: {params.get('errorText', 'failed')}")
    return failed


def wait_for(driver: Any, js_condition: str, timeout: float = 20, helpers: str = "") -> Any:
    """Evaluate `js_condition`, a JS expression, every 0.1 s until it is truthy and return
    its value; fail the test, naming the expression, after `timeout` seconds. DEEP_QUERY's
    functions and those in `helpers` (JS function declarations) are defined."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"{DEEP_QUERY}\n{helpers}\nreturn ({js_condition});")
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for: {js_condition}\n"
                        f"failed requests: {failed_requests(driver)}\n"
                        f"console errors: {console_errors(driver)}")
        time.sleep(0.1)


def run_js(driver: Any, body: str, *args: Any) -> Any:
    """Run a JS function body with DEEP_QUERY's functions defined."""
    return driver.execute_script(f"{DEEP_QUERY}\n{body}", *args)


# deepQueryAll(selector, root): every element matching the CSS selector in `root`
# (default: document) and in every shadow root below it, however deep, in document order
# within each tree. Open shadow roots only (Polymer's and Angular's are open).
DEEP_QUERY = """
function deepQueryAll(selector, root) {
  const found = [];
  const visit = (node) => {
    for (const element of node.querySelectorAll('*')) {
      if (element.matches(selector)) found.push(element);
      if (element.shadowRoot) visit(element.shadowRoot);
    }
  };
  visit(root || document);
  return found;
}
"""
