"""The explorer in a real browser (headless Chromium driven by Selenium), against a real `shapjax explore` server.

Load the page, see the image and the overlay, click 👎, see the next class, click 👍, kill and restart the
server, find both verdicts still there. Skipped, with the reason, where no Chromium + chromedriver is installed
(CI installs Debian's `chromium chromium-driver` in .ci/run).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("starlette", reason="the explorer needs starlette + uvicorn: pip install 'shapjax[explore]'")
pytest.importorskip("uvicorn", reason="the explorer needs starlette + uvicorn: pip install 'shapjax[explore]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (in the test extra)")


def _find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome", "chrome")
DRIVER = _find("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="no headless browser: install Chromium and its driver "
                                       "(Debian: apt-get install chromium chromium-driver)")
SETTINGS = "kernel|grid:4x4|constant:0,gradcam"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


class Server:
    def __init__(self, store, port):
        self.store, self.port, self.proc = store, port, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self):
        cmd = [sys.executable, "-m", "shapjax", "explore", "samples:planted-patch", "--model", "planted-patch",
               "--store", str(self.store), "--port", str(self.port), "--settings", SETTINGS, "--n-evals", "64",
               "--quiet"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.proc.stdout.read()}")
            try:
                return _get(self.url + "/api/health")
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the server did not answer within 180 s")

    def kill(self):  # SIGKILL: no clean shutdown, confirmed feedback must already be on disk
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture()
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def _wait(d, cond, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout).until(lambda d: cond(d))


def test_look_vote_restart_and_find_the_feedback(browser, tmp_path):
    from selenium.webdriver.common.by import By

    by_id = lambda i: browser.find_element(By.ID, i)  # noqa: E731
    srv = Server(tmp_path / "store", _free_port())
    try:
        assert srv.start()["n_feedback"] == 0
        browser.get(srv.url + "/")
        _wait(browser, lambda d: by_id("overlay").get_attribute("data-ready") == "1")
        assert browser.execute_script("return document.getElementById('image').naturalWidth") > 0
        assert browser.execute_script("return document.getElementById('overlay').naturalWidth") > 0
        top = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#top5 li")]
        first = by_id("class-name").text
        assert top[0].startswith(first) and len(top) == 4
        assert "Thompson" in by_id("reason").text and by_id("setting-name").text in SETTINGS.split(",")

        by_id("btn-down").click()  # 👎: as in the seed, the next class's explanation is shown
        second = top[1].split(" ")[0]
        _wait(browser, lambda d: by_id("class-name").text == second
              and by_id("overlay").get_attribute("data-ready") == "1")
        assert not by_id("after-down").get_attribute("hidden")
        assert "next class" in by_id("after-down-text").text
        by_id("mode-brush").click()  # mark the region that should matter: a brush stroke on the overlay
        from selenium.webdriver.common.action_chains import ActionChains

        marks = by_id("marks")
        ActionChains(browser).move_to_element_with_offset(marks, -60, -60).click_and_hold() \
            .move_by_offset(40, 0).move_by_offset(0, 40).release().perform()
        _wait(browser, lambda d: by_id("mark-count").text.endswith("marks"))
        by_id("btn-up").click()
        _wait(browser, lambda d: by_id("status").text.startswith("saved #2"))
        assert "marked pixels" in by_id("status").text
        assert by_id("feedback-count").text == "2 verdicts"

        srv.kill()
        assert srv.start()["n_feedback"] == 2
        rows = _get(srv.url + "/api/feedback")["feedback"]
        assert [(r["class_name"], r["verdict"]) for r in rows] == [(first, "down"), (second, "up")]
        assert rows[0]["regions"] == [] and len(rows[1]["regions"]) >= 2 and {"x", "y", "r"} == set(rows[1]["regions"][0])
        browser.get(srv.url + "/")
        _wait(browser, lambda d: by_id("feedback-count").text == "2 verdicts")
    finally:
        srv.kill()
