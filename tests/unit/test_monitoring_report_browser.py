"""The monitoring report in a real browser: headless chromium, driven over the DevTools protocol.
The drifted run's page loads without a console error or a single network request, every section
and chart is laid out with a size, every SVG drew, and a screenshot is kept: the whole page under
build/test-artifacts/, and its top in docs/images/ for the README.

CI needs Debian's chromium (`apt-get install -y chromium`); without it this test fails, it does
not skip, so that a machine without it cannot pass the suite unseen.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_monitoring_report import ALWAYS_PLOTTED, SECTIONS, SPEC, monitoring_runs
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
# Debian's chromium; INFERLINE_CHROMIUM names another build of it (or Chrome) where there is one.
CHROMIUM = os.environ.get("INFERLINE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACT = ROOT / "build" / "test-artifacts" / "monitoring-report.png"
DOCS_IMAGE = ROOT / "docs" / "images" / "monitoring-report.png"
WIDTH, DOCS_HEIGHT = 1280, 2400
DOCS_MAX_BYTES = 600_000
TIMEOUT = 30.0


class Chromium:
    """One headless chromium and one page in it, over the DevTools protocol's websocket; every
    event the page sends is kept in `events`."""

    def __init__(self, profile: Path):
        self.stderr = (profile / "stderr.log").open("w+")
        self.process = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=self.stderr,
        )  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self._id = 0
        self._open = contextlib.ExitStack()
        # max_size=None: a full-page screenshot is one message of several megabytes.
        self.socket = self._open.enter_context(
            connect(self._devtools_url(profile), max_size=None, open_timeout=TIMEOUT)
        )
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self.session = attached["sessionId"]

    def _devtools_url(self, profile: Path) -> str:
        """Chromium writes the port it chose (and the browser's path) to DevToolsActivePort."""
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stderr.seek(0)
                raise RuntimeError(
                    f"chromium exited ({self.process.returncode}): {self.stderr.read()[-2000:]}"
                )
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) == 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise TimeoutError(f"chromium did not open its DevTools port in {TIMEOUT:.0f} s")

    def call(self, method: str, params: dict | None = None, *, session: bool = True) -> dict[str, Any]:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv(timeout=TIMEOUT))
            if reply.get("id") != self._id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]

    def wait_for(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic()))))
        raise TimeoutError(f"no {method} in {TIMEOUT:.0f} s")

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression[:60]}...: {reply['exceptionDetails']}")
        return reply["result"]["value"]

    def close(self) -> None:
        self._open.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    """The drifted run's report, loaded in chromium at 1280 CSS pixels wide."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the report's browser test needs Debian's chromium. Install it with "
            "`apt-get install -y chromium` (as root; CI installs it).",
            pytrace=False,
        )
    with tempfile.TemporaryDirectory(prefix="inferline-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(monitoring_runs()["drifted"].html, encoding="utf-8")
        profile = Path(tmp) / "profile"
        profile.mkdir()
        chromium = Chromium(profile)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                chromium.call(f"{domain}.enable")
            chromium.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            chromium.call("Page.navigate", {"url": page.as_uri()})
            chromium.wait_for("Page.loadEventFired")
            yield chromium
        finally:
            chromium.close()


def test_the_page_loads_without_errors_or_network(browser):
    errors = []
    for event in browser.events:
        method, params = event.get("method"), event.get("params") or {}
        if method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args"))[:300])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(params["entry"].get("text"))
    assert not errors, f"console errors: {errors}"
    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    outside = [url for url in requests if not url.startswith(("file://", "data:"))]
    assert requests and not outside, f"the page fetched {outside}"


def test_every_section_and_chart_is_laid_out_and_every_svg_drew(browser):
    layout = browser.evaluate(
        """(() => {
        const size = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
        const out = {sections: {}, plots: {}, svgs: [], width: document.documentElement.scrollWidth};
        document.querySelectorAll('[id]').forEach((e) => { out.sections[e.id] = size(e); });
        document.querySelectorAll('[data-plot]').forEach((e) => { out.plots[e.dataset.plot] = size(e); });
        document.querySelectorAll('svg').forEach((s) => {
            const box = s.getBBox();
            const plot = s.closest('[data-plot]');
            out.svgs.push({size: size(s), drawn: [box.width, box.height],
                           shapes: s.querySelectorAll('path').length, plot: plot && plot.dataset.plot});
        });
        // Ticks and markers are <use href="#id">: each must find its definition.
        out.unresolved = [...document.querySelectorAll('use')].map((u) => u.getAttribute('href'))
            .filter((h) => !h || !document.getElementById(h.slice(1)));
        out.uses = document.querySelectorAll('use').length;
        return out;
    })()"""
    )
    for section in SECTIONS:
        assert section in layout["sections"], f"no #{section}"
        assert min(layout["sections"][section]) > 0, f"#{section} has no size: {layout['sections'][section]}"
    expected = ALWAYS_PLOTTED | {"score", "predicted"} | {f"feature-{name}" for name in SPEC.model_inputs}
    assert expected <= set(layout["plots"]), f"missing charts: {expected - set(layout['plots'])}"
    for plot, (width, height) in layout["plots"].items():
        assert width > 100 and height > 80, f"chart {plot} is {width}x{height}"
    assert len(layout["svgs"]) >= len(expected)
    for svg in layout["svgs"]:
        assert min(svg["size"]) > 50 and min(svg["drawn"]) > 50 and svg["shapes"] > 3, f"an empty SVG: {svg}"
        assert svg["plot"], "every SVG sits in a chart"
    assert layout["uses"] > 100 and not layout["unresolved"], f"unresolved <use>: {layout['unresolved'][:5]}"
    assert layout["width"] <= WIDTH, f"the page scrolls sideways at {WIDTH}px: {layout['width']}px wide"


def test_a_screenshot_is_kept(browser):
    height = int(browser.call("Page.getLayoutMetrics")["cssContentSize"]["height"])
    shot = browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
        },
    )
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"])))
    assert image.size == (WIDTH, height) and height > 3000
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    image.save(ARTIFACT)

    # The README's picture: the top of the page, in 256 colours (a third of the bytes, and the
    # page is flat colours anyway). Written only when it changed, so a test run leaves git alone.
    top = (
        image.crop((0, 0, WIDTH, min(DOCS_HEIGHT, height)))
        .convert("RGB")
        .quantize(256, dither=Image.Dither.NONE)
    )
    buffer = io.BytesIO()
    top.save(buffer, format="png", optimize=True)
    data = buffer.getvalue()
    assert len(data) < DOCS_MAX_BYTES, f"docs screenshot is {len(data):,} bytes"
    if not DOCS_IMAGE.exists() or DOCS_IMAGE.read_bytes() != data:
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        DOCS_IMAGE.write_bytes(data)
