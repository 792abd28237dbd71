"""Headless Chromium driven over the DevTools protocol, for pages that render over a websocket
(Streamlit): `--dump-dom` returns before such a page has drawn anything, so the test waits for the text
it expects, then takes the screenshot. Hand-written (about 40 lines) instead of adding Playwright,
which downloads its own browser at install time; this uses Debian's chromium and the `websockets`
package Streamlit already installs."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self, profile: Path, width: int = 1600, height: int = 1100):
        port = free_port()
        self.proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      "--disable-background-networking", f"--remote-debugging-port={port}",
                                      f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=1))
                page = next(p for p in pages if p["type"] == "page")
                break
            except (OSError, StopIteration, ValueError):
                time.sleep(0.2)
        else:
            self.close()
            raise RuntimeError("chromium did not open its DevTools port")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, legacy=True)  # held across calls
        self._id = 0

    def send(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return self.send("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                         returnByValue=True)["result"].get("value") or ""

    def wait_for(self, *needles: str, timeout: float) -> str:
        """The page's text once every needle is on it: Streamlit sends its elements one after another, so a
        page read when the first needle shows can still lack the ones drawn after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        text = self.text()
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"{missing!r} not on the page after {timeout:.0f} s; it shows: {text[-2000:]}")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        except AttributeError:
            pass
        self.proc.terminate()
        self.proc.wait(timeout=20)
