"""Open every page of the built docs site in headless Chromium and check it.

Usage: python docs_check.py BOOK_DIR OUT_DIR

For every book page (not the rustdoc pages under api/): no console errors; every internal link
resolves to a file, and its #anchor to an element id in that file; every image loads. Screenshots
of the landing page and one modality page go to OUT_DIR. Prints a JSON summary; exits 1 when a
check fails, 3 when Chromium or chromedriver cannot be started.
"""
import functools
import http.server
import json
import pathlib
import re
import sys
import threading
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

book = pathlib.Path(sys.argv[1]).resolve()
out = pathlib.Path(sys.argv[2]).resolve()
out.mkdir(parents=True, exist_ok=True)

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


handler = functools.partial(Quiet, directory=str(book))
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_port}/"

options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
try:
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
except Exception as e:  # no browser here: the caller reports a skip
    print(json.dumps({"error": f"cannot start Chromium: {e}"}))
    sys.exit(3)

ids_cache = {}


def ids_of(path):
    if path not in ids_cache:
        text = path.read_text(encoding="utf-8", errors="replace")
        ids_cache[path] = set(re.findall(r'\sid="([^"]+)"', text))
    return ids_cache[path]


pages = sorted(p for p in book.rglob("*.html") if "api" not in p.relative_to(book).parts[:1])
SCREENSHOTS = ("index.html", "tutorial-vision.html", "vision.html")
shots = []
failures, checked_links, checked_images = [], 0, 0
for page in pages:
    rel = page.relative_to(book).as_posix()
    driver.get(base + rel)
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            failures.append(f"{rel}: console error: {entry.get('message')}")
    hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    for href in hrefs:
        parsed = urllib.parse.urlparse(href)
        if parsed.scheme or href.startswith("//") or href.startswith("mailto:"):
            continue
        target = page if not parsed.path else (page.parent / urllib.parse.unquote(parsed.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        checked_links += 1
        if not target.is_file():
            failures.append(f"{rel}: broken link {href}")
            continue
        if parsed.fragment and target.suffix == ".html" and parsed.fragment not in ids_of(target):
            failures.append(f"{rel}: missing anchor {href}")
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))"
    )
    checked_images += driver.execute_script("return document.images.length")
    failures.extend(f"{rel}: image does not load: {src}" for src in broken)
    if rel in SCREENSHOTS:
        # The screenshot check: the landing page and a tutorial render with their title visible at
        # the top and a page that is not blank (a blank 1280x900 PNG is a few KB; these are
        # over 100 KB).
        png = driver.get_screenshot_as_png()
        (out / rel.replace(".html", ".png")).write_bytes(png)
        title = driver.execute_script(
            "const h = document.querySelector('main h1'); if (!h) return null;"
            "const r = h.getBoundingClientRect();"
            "return [r.top, r.height, getComputedStyle(h).visibility, window.innerHeight, h.textContent];"
        )
        if not title or title[1] <= 0 or not (0 <= title[0] < title[3]) or title[2] != "visible":
            failures.append(f"{rel}: screenshot: no visible title at the top ({title})")
        if len(png) < 20000:
            failures.append(f"{rel}: screenshot: {len(png)} bytes, a blank page?")
        shots.append(rel)

driver.quit()
server.shutdown()
missing = [r for r in SCREENSHOTS if r not in shots]
failures.extend(f"{r}: no such page to screenshot" for r in missing)
print(json.dumps({"pages": len(pages), "links": checked_links, "images": checked_images, "screenshots": shots, "failures": failures}))
sys.exit(1 if failures else 0)
