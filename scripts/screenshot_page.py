"""Take the screenshot of the `p4r serve` page that the README shows (docs/serve-page.png).

Starts the real `p4r serve` on a free loopback port over an index (default: demo-out/index from `make demo`, with
examples/interactions.jsonl), opens the page in headless Chromium (Debian's, driven by Playwright) at desktop
width, picks a user, asks for recommendations, opens the first item, and saves the screenshot.

Usage: .venv/bin/python scripts/screenshot_page.py [--index DIR] [--interactions FILE] [--user ID] [--out PNG]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"p4r serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)  # polling a server that is still loading its encoder
    raise SystemExit(f"p4r serve was not ready within {seconds:g} s")


def shoot(url: str, user: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.get_by_test_id("user-select").select_option(user)
        page.get_by_test_id("k").fill("5")
        page.get_by_test_id("submit").click()
        page.get_by_test_id("hit").first.wait_for()
        page.get_by_test_id("hit-open").first.click()
        expect(page.get_by_test_id("item-persona").first).to_be_visible()
        page.evaluate("window.scrollTo(0, 0)")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=REPO_ROOT / "demo-out" / "index")
    parser.add_argument("--interactions", type=Path, default=REPO_ROOT / "examples" / "interactions.jsonl")
    parser.add_argument("--user", default="demo-petite-dresses")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "serve-page.png")
    parser.add_argument("--chromium", default=os.environ.get("P4R_CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("no Chromium: install it with `apt-get install chromium chromium-driver`")
    if not (args.index / "store").exists():
        raise SystemExit(f"no index at {args.index}: run `make demo` first")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    index = os.path.relpath(args.index.resolve(), REPO_ROOT)  # the header line shows it: no local path
    command = [sys.executable, "-m", "p4r_search", "serve", "--index", index,
               "--interactions", str(args.interactions), "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        wait_ready(url, process)
        shoot(url, args.user, args.out, args.chromium)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
