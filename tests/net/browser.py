"""A resident's phone browser: headless Chromium, driven through chromedriver, run inside a
lab phone's namespace (``ip netns exec PHONE python browser.py ...``). It opens a plain
HTTP address, follows the captive portal, taps the button, opens the city app, keeps a
screenshot of each page, and prints what it saw as JSON.

Names resolve as the gateway's DNS would answer them (``--map name=address``), through
Chromium's own resolver rules: the namespace has no resolv.conf of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

PHONE_SCREEN = (412, 915)  # CSS pixels of a common cheap Android phone


def browser(maps: list[str], lang: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    rules = ", ".join(f"MAP {m.replace('=', ' ')}" for m in maps) + ", EXCLUDE localhost"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a namespace; the page is our own
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--ignore-certificate-errors",  # the lab's city app has a self-signed certificate
        f"--window-size={PHONE_SCREEN[0]},{PHONE_SCREEN[1]}",
        f"--host-resolver-rules={rules}",
        f"--lang={lang}",
    ):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", required=True, help="the plain HTTP address first opened")
    parser.add_argument("--map", action="append", default=[], help="name=address")
    parser.add_argument("--shots", required=True, help="directory for the screenshots")
    parser.add_argument("--lang", default="id")
    parser.add_argument("--app-host", required=True, help="where the city app's link leads")
    args = parser.parse_args()
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    seen_pages: dict[str, object] = {}
    driver = browser(args.map, args.lang)
    try:
        driver.set_page_load_timeout(20)
        wait = WebDriverWait(driver, 20)

        driver.get(args.start)
        button = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "button.primary")))
        seen_pages["splash"] = {
            "url": driver.current_url,
            "title": driver.title,
            "button": button.text,
            "lang": driver.find_element(By.TAG_NAME, "html").get_attribute("lang"),
        }
        driver.save_screenshot(str(shots / "splash.png"))

        button.click()
        wait.until(seen.url_contains("/berhasil"))
        app_link = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "a.primary")))
        seen_pages["success"] = {
            "url": driver.current_url,
            "heading": driver.find_element(By.TAG_NAME, "h2").text,
            "link": app_link.get_attribute("href"),
        }
        driver.save_screenshot(str(shots / "success.png"))

        app_link.click()
        wait.until(seen.url_contains(args.app_host))
        wait.until(seen.presence_of_element_located((By.TAG_NAME, "body")))
        seen_pages["city_app"] = {
            "url": driver.current_url,
            "text": driver.find_element(By.TAG_NAME, "body").text,
        }
        driver.save_screenshot(str(shots / "city-app.png"))
    except WebDriverException as exc:
        seen_pages["error"] = f"{type(exc).__name__}: {exc.msg}"
        driver.save_screenshot(str(shots / "failure.png"))
    finally:
        driver.quit()
    json.dump(seen_pages, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
