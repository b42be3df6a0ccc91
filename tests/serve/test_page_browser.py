"""test_page_browser.py: the chat page at / in a real browser: headless
Chromium (Debian's chromium + chromium-driver) driven by selenium types a
message, sees a streamed reply, presses stop on a long one, and checks the
conversation survives a reload (localStorage). A screenshot is saved as a
test artifact ($LYRA_TEST_ARTIFACTS, default build/test-artifacts).
Skips when selenium or chromium is missing."""
import os
import shutil
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from conftest import ROOT  # noqa: E402


def browser():
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("chromium / chromedriver not installed (Debian: chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1000,800"):
        opts.add_argument(a)
    from selenium.webdriver.chrome.service import Service
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_chat_page(make_server):
    s = make_server("--parallel", "2")
    d = browser()
    try:
        d.get(s.base + "/")
        wait = WebDriverWait(d, 30)
        wait.until(lambda d: d.find_element(By.ID, "model").text == "stories260K")
        box = d.find_element(By.ID, "input")
        box.send_keys("Tell me a story")
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant.done"))
        reply = d.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].text
        assert reply.strip(), "no reply text"
        # a long reply, stopped while it streams
        d.find_element(By.ID, "toggle").click()
        mt = d.find_element(By.ID, "max_tokens")
        mt.clear()
        mt.send_keys("2000")
        # A tiny model streams its whole reply faster than selenium polls, so
        # the page itself presses stop (a MutationObserver) as soon as the
        # first streamed text of the new reply is shown.
        d.execute_script("""
            window.__stopped = false;
            const log = document.getElementById("log");
            const obs = new MutationObserver(() => {
              const b = document.querySelectorAll(".msg.assistant.streaming");
              const stop = document.getElementById("stop");
              if (b.length && b[b.length - 1].textContent.trim() && !stop.disabled) {
                obs.disconnect();
                window.__stopped = true;
                stop.click();
              }
            });
            obs.observe(log, {subtree: true, childList: true, characterData: true});
        """)
        box.send_keys("Another one")
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: d.execute_script("return window.__stopped"))
        wait.until(lambda d: d.find_element(By.ID, "stop").get_attribute("disabled"))
        assert len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant.done")) == 2
        art = os.environ.get("LYRA_TEST_ARTIFACTS") or os.path.join(ROOT, "build", "test-artifacts")
        os.makedirs(art, exist_ok=True)
        d.save_screenshot(os.path.join(art, "chat-page.png"))
        # the conversation is kept across a reload
        d.refresh()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.user")) == 2)
        assert d.find_elements(By.CSS_SELECTOR, ".msg.assistant")[0].text == reply
        # the slot of the stopped reply is free again
        deadline = time.time() + 10
        while s.metrics()["lyra_slots_busy"] and time.time() < deadline:
            time.sleep(0.1)
        assert s.metrics()["lyra_slots_busy"] == 0
    finally:
        d.quit()
