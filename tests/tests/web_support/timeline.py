#!/usr/bin/python3
"""Watches a power sequence on a real collector's status page in headless
chromium (tests/tests/power_web_e2e.rs runs it).

    timeline.py BASE_URL DOMAIN

Prints READY once the overview is live; the test then pulls the plug. Prints
TIMELINE <n> once the domain's timeline, updated without a reload, shows the
workers powered off and the UPS told to cycle, then OK. Any failed check
exits 1 with the reason on stderr.
"""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from browser import browser, console_errors, fail, text_of, wait_for  # noqa: E402


def main():
    base, domain = sys.argv[1], sys.argv[2]
    driver = browser()
    try:
        driver.get(base + "/")
        wait_for("the live stream", 5, lambda: text_of(driver, "#live-status") == "live")
        marker = driver.execute_script("window.__same_page = 1; return 1")
        print("READY", flush=True)
        sys.stdin.readline()
        box = "#domain-%s" % domain

        def timeline():
            return text_of(driver, box + " .timeline")

        wait_for("the workers' poweroff in the timeline", 40,
                 lambda: "powering off workers" in timeline())
        wait_for("the UPS cycle in the timeline", 40,
                 lambda: "to cycle UPS" in timeline())
        if driver.execute_script("return window.__same_page") != marker:
            fail("the page was reloaded")
        entries = driver.find_elements("css selector", box + " .timeline li")
        print("TIMELINE %d" % len(entries), flush=True)
        errors = console_errors(driver)
        if errors:
            fail("browser console errors: %r" % errors)
        print("OK", flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
