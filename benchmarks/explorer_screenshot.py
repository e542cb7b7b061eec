"""The README's screenshot of the explorer: ``python -m benchmarks.explorer_screenshot`` -> ``docs/explorer.png``.

Starts ``shapjax explore samples:planted-patch --model planted-patch`` on a fresh
store, gives it the verdicts of the simulated user of
``benchmarks/explorer_learning.py`` on the first six shipped images (👍 iff most
of the positive attribution lies in the planted patch, each setting once per
image), then opens the page in headless Chromium (Debian's ``chromium`` and
``chromium-driver``) on the seventh image, opens the posteriors and the
side-by-side comparison, and saves the page.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.5


def _get(url):
    with urllib.request.urlopen(url, timeout=300) as r:
        return json.loads(r.read())


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main() -> int:
    import numpy as np
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from shapjax import data

    masks = data.samples("planted-patch").masks
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    store = tempfile.mkdtemp(prefix="explorer-shot-")
    proc = subprocess.Popen([sys.executable, "-m", "shapjax", "explore", "samples:planted-patch", "--model",
                             "planted-patch", "--store", store, "--port", str(port), "--quiet"])
    try:
        for _ in range(600):
            try:
                health = _get(url + "/api/health")
                break
            except OSError:
                time.sleep(0.5)
        ids = _get(url + "/api/images")["images"]
        for i, image_id in enumerate(ids[:6]):
            for s in health["settings"]:
                q = urllib.parse.urlencode({"image_id": image_id, "setting": s["name"], "wait": 120})
                v = _get(f"{url}/api/next?{q}")
                pix = np.maximum(np.asarray(v["explanation"]["pixels"]), 0)
                share = float(pix[masks[i]].sum() / max(pix.sum(), 1e-12))
                _post(url + "/api/feedback", {"image_id": image_id, "class": v["class"]["index"],
                                              "setting": s["name"], "verdict": "up" if share >= THRESHOLD else "down"})
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,900"):
            opts.add_argument(a)
        d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            d.get(url + "/")
            wait = WebDriverWait(d, 300)
            wait.until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-ready") == "1")
            d.find_element(By.ID, "btn-next").click()  # images 2..7: the bandit's choice for a new image
            for _ in range(5):
                d.find_element(By.ID, "btn-next").click()
                time.sleep(0.3)
            wait.until(lambda d: d.find_element(By.ID, "image-title").text.startswith(ids[6])
                       and d.find_element(By.ID, "overlay").get_attribute("data-ready") == "1")
            d.execute_script("document.querySelector('details').open = true")
            d.find_element(By.ID, "btn-compare").click()
            wait.until(lambda d: d.execute_script("return [...document.querySelectorAll('#compare-grid img')]"
                                                  ".every(i => i.complete && i.naturalWidth > 0)"))
            d.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.5)
            w, h = d.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            shot = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                                "clip": {"x": 0, "y": 0, "width": w, "height": h,
                                                                         "scale": 1}})
            out = ROOT / "docs" / "explorer.png"
            out.write_bytes(base64.b64decode(shot["data"]))
            print(f"{out}: {d.find_element(By.ID, 'reason').text}")
        finally:
            d.quit()
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    raise SystemExit(main())
