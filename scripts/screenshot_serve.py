"""A screenshot of `nmt serve`'s web page after it translated some text, in headless Chromium.

Starts a server on a free loopback port, opens the page, types the text, sets beam and n-best,
presses Translate and saves the window as a PNG (the README's picture of the page):

    python scripts/screenshot_serve.py --checkpoint runs/quickstart/run \\
        --text "three hundred and forty-two" --text "nine thousand and one" --out docs/serve-page.png
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.benchmark_serve import ServerProcess  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Run or checkpoint folder (NAME=PATH names it).")
    parser.add_argument("--text", action="append", required=True, help="A line to translate (repeatable).")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--n-best", type=int, default=3)
    parser.add_argument("--size", default="1000,900", help="Window width,height in pixels.")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    chromium, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        sys.exit("error: needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    spec = args.checkpoint if "=" in args.checkpoint else f"{Path(args.checkpoint).name}={args.checkpoint}"
    server = ServerProcess(["-m", spec, "--threads", "1"])
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={args.size}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_element(By.ID, "translate").is_enabled())
        for field, value in (("beam", args.beam), ("n-best", args.n_best)):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(str(value))
        driver.find_element(By.ID, "source").send_keys("\n".join(args.text))
        driver.find_element(By.ID, "translate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == len(args.text))
        driver.save_screenshot(str(args.out))
        print(f"saved {args.out}")
    finally:
        driver.quit()
        server.stop()


if __name__ == "__main__":
    main()
