"""The page viewer in a real headless Chromium: boxes over the page, text beside, click selects."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.db import repo
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.process import encode_png
from pipeline.segment import segment_page
from pipeline.viewer import make_server, render_viewer
from tests.model_fixtures import LETTER_LINES, make_letter_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium and chromium-driver are not installed")
DPI = 150
CONFIDENCES = (0.97, 0.93, 0.55, 0.78)  # one red and one amber line among them


@pytest.fixture
def viewer_url(tmp_path):
    """A letter page stored and saved as a finished document (its lines read with the
    confidences above), served by the same server `quire view` runs."""
    page_image = make_letter_page(DPI)
    seg = segment_page(page_image, dpi=DPI)
    assert len(seg.lines) == len(LETTER_LINES)
    store = storage.LocalStore(tmp_path / "store")
    engine = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    upgrade(engine)
    sha = hashlib.sha256(b"letter").hexdigest()
    key = storage.page_key(sha, "p", 1)
    store.put_bytes(key, encode_png(page_image))
    with session_scope(engine) as s:
        doc, _ = repo.upsert_document(s, sha256=sha, profile="p", name="letter.pdf",
                                      source_uri="file:///letter.pdf", size_bytes=1)
        page = repo.save_page(s, doc.id, number=1, image_key=key, width=page_image.shape[1],
                              height=page_image.shape[0], dpi=DPI, angle=seg.angle)
        lines = repo.save_lines(s, page.id, [(lb.order, lb.bbox, None) for lb in seg.lines])
        repo.set_line_texts(s, [(ln.id, t, c) for ln, t, c in zip(lines, LETTER_LINES, CONFIDENCES)],
                            model="quire-test")
        repo.finish_document(s, doc.id, 1)
        result = repo.load_document_result(s, doc.id)
    engine.dispose()
    server = make_server(render_viewer(result, store.get_bytes))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1400,900"):
        options.add_argument(flag)
    # The Debian driver, given explicitly: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_viewer_shows_boxes_and_text_and_clicking_selects(viewer_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(viewer_url)
    boxes = browser.find_elements(By.CSS_SELECTOR, "section.page.shown rect.box")
    items = browser.find_elements(By.CSS_SELECTOR, "section.page.shown li.line")
    assert len(boxes) == len(items) == len(LETTER_LINES)
    assert [i.find_element(By.CLASS_NAME, "text").text for i in items] == list(LETTER_LINES)
    assert [b.get_attribute("class").split()[1] for b in boxes] == ["high", "high", "low", "mid"]
    image = browser.find_element(By.CSS_SELECTOR, "section.page.shown img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    # Every box is drawn on the image, where its line is: inside the image's rendered area.
    img_rect = image.rect
    for box in boxes:
        r = box.rect
        assert r["width"] > 10 and r["height"] > 3
        assert img_rect["x"] <= r["x"] and r["x"] + r["width"] <= img_rect["x"] + img_rect["width"]

    boxes[2].click()
    assert "selected" in items[2].get_attribute("class").split()
    assert "selected" in boxes[2].get_attribute("class").split()
    items[0].click()
    assert "selected" in boxes[0].get_attribute("class").split()
    assert "selected" not in boxes[2].get_attribute("class").split()

    browser.find_element(By.ID, "low-only").click()
    visible = [i.text for i in items if i.is_displayed()]
    assert len(visible) == 1 and LETTER_LINES[2] in visible[0]
    browser.find_element(By.ID, "low-only").click()
    browser.find_element(By.ID, "next-low").click()
    assert "selected" in items[2].get_attribute("class").split()

    shot = Path(os.environ.get("QUIRE_VIEWER_SCREENSHOT", tmp_path / "viewer.png"))
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
