#!/usr/bin/python3
"""Drives Debian's headless chromium through chromium-driver against a real
collector's status page (tests/tests/web_browser.rs runs it).

    browser.py BASE_URL '{"node": "48.3 °C", ...}' CHART_NODE

Talks to the Rust test over stdin/stdout: prints READY once the overview
is live, waits for PULLED (the test has pulled the simulated UPS's plug),
then prints ON_BATTERY <seconds> when the UPS tile says so without a reload.
Any failed check exits 1 with the reason on stderr.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By


def fail(message):
    print("browser check failed: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def browser(javascript=True):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(what, timeout, check, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # the element may be swapped mid-read
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def text_of(driver, css):
    # The live stream replaces tiles as samples arrive; an element found a
    # moment ago may be gone by the time its text is read. Find it again:
    # the replacement is what the user sees now.
    for _ in range(20):
        try:
            return driver.find_element(By.CSS_SELECTOR, css).text
        except StaleElementReferenceException:
            time.sleep(0.01)
    fail("%s kept being replaced for 20 reads in a row" % css)


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def no_horizontal_scroll(driver, page):
    width = driver.execute_script("return window.innerWidth")
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    if width != 360:
        fail("%s: viewport is %spx wide, not 360" % (page, width))
    if scroll > width:
        fail("%s: %spx of content in a %spx viewport scrolls sideways" % (page, scroll, width))


def main():
    base, temps, chart_node = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    driver = browser()
    try:
        driver.get(base + "/")
        for node, temp in temps.items():
            tile = text_of(driver, "#node-%s .temp" % node)
            if temp not in tile:
                fail("tile of %s shows %r, the CLI shows %r" % (node, tile, temp))
        wait_for("the live stream", 5, lambda: text_of(driver, "#live-status") == "live")
        ups = "#sec-ups .ups-status"
        wait_for("the UPS on line", 10, lambda: "on line" in text_of(driver, ups))
        driver.execute_script("window.nodewardenNoReload = 42")
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "PULLED":
            fail("the test did not pull the plug")
        start = time.monotonic()
        wait_for("the UPS tile to say on battery", 2.0,
                 lambda: "on battery" in text_of(driver, ups))
        took = time.monotonic() - start
        if driver.execute_script("return window.nodewardenNoReload") != 42:
            fail("the page reloaded instead of updating its tile")
        print("ON_BATTERY %.3f" % took, flush=True)

        def chart_points():
            driver.get("%s/node/%s?range=1h" % (base, chart_node))
            line = driver.find_elements(By.CSS_SELECTOR, "#chart-cpu_temp polyline")
            points = line[0].get_attribute("points").split() if line else []
            return points if len(points) >= 2 else None
        points = wait_for("a CPU temperature chart with points", 20, chart_points, interval=1)
        print("CHART %d points" % len(points), flush=True)
        errors = console_errors(driver)
        if errors:
            fail("browser console errors: %s" % errors)

        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True})
        driver.get(base + "/")
        no_horizontal_scroll(driver, "overview")
        driver.get("%s/node/%s?range=24h" % (base, chart_node))
        no_horizontal_scroll(driver, "node page")
        errors = console_errors(driver)
        if errors:
            fail("browser console errors: %s" % errors)
    finally:
        driver.quit()

    static = browser(javascript=False)
    try:
        static.get(base + "/")
        for node in temps:
            if not static.find_elements(By.ID, "node-" + node):
                fail("with JavaScript off the overview does not list " + node)
        if text_of(static, "#live-status") == "live":
            fail("the script ran although JavaScript is off")
    finally:
        static.quit()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
