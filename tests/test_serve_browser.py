"""The web page in a real headless Chromium (Debian's chromium and chromium-driver, via selenium):
it loads the models, translates a sentence typed into it, and shows the server's answer.

CI installs chromium (.ci/run). Without a chromium on the machine the test is skipped with a loud
reason; anything else that goes wrong with the browser fails it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serve_support import limited_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NO_BROWSER = ("NO CHROMIUM ON THIS MACHINE: the browser test of the web page did not run "
              "(apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(trained_run):
    started = limited_server(trained_run)
    yield started
    assert started.stop() == 0, started.output()


def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(NO_BROWSER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1000,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def translate_in_page(driver, url: str, text: str, beam: int = 3, n_best: int = 2, screenshot: Path | None = None):
    """Open the page, type `text`, press Translate; the page's best translation and n-best rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.ID, "translate").is_enabled())  # the models are listed
    for field, value in (("beam", beam), ("n-best", n_best)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(str(value))
    driver.find_element(By.ID, "source").send_keys(text)
    driver.find_element(By.ID, "translate").click()
    wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "#results .best")))
    if screenshot is not None:
        driver.save_screenshot(str(screenshot))
    best = driver.find_element(By.CSS_SELECTOR, "#results .best").text
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#results tr.hypothesis")]
    models = [option.get_attribute("value") for option in driver.find_elements(By.CSS_SELECTOR, "#model option")]
    attention_offered = driver.find_element(By.ID, "attention").is_displayed()
    return best, rows, models, driver.find_element(By.ID, "status").text, attention_offered


def test_the_page_translates_a_sentence_typed_into_it(server):
    driver = browser()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        best, rows, models, status, attention_offered = translate_in_page(driver, url, "wa0 wb1 wc2")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    expected = server.post({"text": "wa0 wb1 wc2", "beam": 3, "n_best": 2}).json()["translations"][0]["hypotheses"]
    assert models == ["toy", "copy"]
    assert best == expected[0]["text"] != ""
    assert rows == [[str(i + 1), h["text"], f"{h['score']:.4f}", f"{h['log_prob']:.4f}"]
                    for i, h in enumerate(expected)]
    assert status.startswith("1 sentence(s), beam 3")
    assert not attention_offered  # the toy model has no attention: no box to tick
    assert errors == []  # no script error, no request the page's policy blocked
