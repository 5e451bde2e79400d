"""A headless-Chromium harness for the report pages (the run report now, the dashboard later).

`Browser` starts Debian's `chromium` through playwright's Python driver (never a downloaded
browser), with a fresh profile and the flags that keep it off the network. `Browser.open`
loads one local page and returns a `Visit` that has recorded every console message, page
error and network request the page made: every request other than the page itself is
aborted and kept, so a test can assert that a page needs no network. Screenshots go to
`ARTIFACTS` (`$AGENT_FINOPS_TEST_ARTIFACTS/browser`, default `test-artifacts/browser` at the
repository root), which CI can keep.

The page-level checks shared by every report page are here too: `figures()` reads every
`<data class="fig">` back, `stray_money()` finds money printed outside one, `contrast()`
measures text against its background, `overflows()` tells whether the page is wider than
the viewport, `attributes()` reads chart points back; `resolve()` finds a figure's value in
the page's JSON and `shown()` parses a figure as displayed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Route,
    sync_playwright,
)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AGENT_FINOPS_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("AGENT_FINOPS_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class ChromiumMissing(RuntimeError):
    """Debian's chromium is not installed (scripts/setup.sh --dev installs it)."""


@dataclass
class Visit:
    """One page opened in the browser, and everything it did."""

    page: Page
    url: str
    console: list[ConsoleMessage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """Every request other than the page itself (each was aborted)."""

    def assert_quiet(self) -> None:
        """No console errors or warnings, no uncaught page errors, no network requests."""
        noisy = [f"{m.type}: {m.text}" for m in self.console if m.type in ("error", "warning")]
        assert not noisy, noisy
        assert not self.errors, self.errors
        assert not self.requests, self.requests

    def screenshot(self, name: str) -> Path:
        """A full-page PNG in ARTIFACTS, named `name`.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def figures(self) -> list[dict[str, Any]]:
        """Every `<data class="fig KIND" data-json=PATH value=RAW>TEXT</data>` on the page."""
        result: list[dict[str, Any]] = self.page.evaluate(
            """() => Array.from(document.querySelectorAll('data.fig')).map(e => ({
                kind: e.classList[1], path: e.dataset.json, value: e.getAttribute('value'),
                text: e.textContent}))"""
        )
        return result

    def stray_money(self) -> list[str]:
        """Text that looks like money (`$1.23`) but is not inside a `data.fig` element."""
        result: list[str] = self.page.evaluate(
            r"""() => {
                const out = [], walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
                for (let n = walk.nextNode(); n; n = walk.nextNode()) {
                    if (n.parentElement.closest('data.fig, title')) continue;
                    if (/\$\s?\d/.test(n.textContent)) out.push(n.textContent);
                }
                return out;
            }"""
        )
        return result

    def contrast(self, selector: str) -> list[dict[str, Any]]:
        """WCAG contrast ratio of each visible element matching `selector` to its background."""
        result: list[dict[str, Any]] = self.page.evaluate(_CONTRAST_JS, selector)
        return result

    def attributes(self, selector: str, names: tuple[str, ...]) -> list[dict[str, str]]:
        """The attributes `names` of every element matching `selector` (chart points)."""
        result: list[dict[str, str]] = self.page.evaluate(
            "([sel, attrs]) => Array.from(document.querySelectorAll(sel)).map("
            "e => Object.fromEntries(attrs.map(a => [a, e.getAttribute(a)])))",
            [selector, list(names)],
        )
        return result

    def overflows(self) -> bool:
        """Whether the document is wider than the viewport (a horizontal page scroll)."""
        return bool(
            self.page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
        )


def resolve(data: Any, path: str) -> Any:
    """The value at a figure's `data-json` path (`days.3.cost_usd`) in the page's JSON."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def shown(kind: str, text: str) -> Decimal:
    """Parse a figure as displayed: `$1,234.5`, `1,234`, `93.02%`."""
    text = text.replace(",", "").strip()
    if kind == "money":
        negative = text.startswith("-")
        value = Decimal(text.lstrip("-").removeprefix("$"))
        return -value if negative else value
    if kind == "pct":
        return Decimal(text.removesuffix("%")) / 100
    return Decimal(text)


class Browser:
    """One headless Chromium with a fresh profile; pages are opened with `open`."""

    def __init__(self) -> None:
        """Start Chromium (raises `ChromiumMissing` with the fix if it is not installed)."""
        if not CHROMIUM.exists():
            raise ChromiumMissing(
                f"{CHROMIUM} not found: run `bash scripts/setup.sh --dev` (it installs Debian's "
                "chromium) or set AGENT_FINOPS_CHROMIUM"
            )
        self._profile = tempfile.mkdtemp(prefix="finops-chromium-")
        self._playwright = sync_playwright().start()
        self.context: BrowserContext = self._playwright.chromium.launch_persistent_context(
            self._profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport=DESKTOP,
        )

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            self.context.close()
        finally:
            self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)

    @contextmanager
    def open(
        self,
        path: Path,
        *,
        viewport: dict[str, int] = DESKTOP,
        color_scheme: str = "light",
    ) -> Iterator[Visit]:
        """Open the local file `path`; every other request is aborted and recorded."""
        page = self.context.new_page()
        url = path.resolve().as_uri()
        visit = Visit(page, url)

        def route(route: Route) -> None:
            if route.request.url == url:
                route.continue_()
            else:
                if route.request.url not in visit.requests:
                    visit.requests.append(route.request.url)
                route.abort()

        def request(req: Request) -> None:
            if req.url != url and req.url not in visit.requests:
                visit.requests.append(req.url)

        page.on("console", lambda message: visit.console.append(message))
        page.on("pageerror", lambda exc: visit.errors.append(str(exc)))
        page.on("request", request)
        page.on("websocket", lambda ws: visit.requests.append(ws.url))
        page.route("**/*", route)
        try:
            page.set_viewport_size(viewport)
            page.emulate_media(color_scheme=color_scheme)  # type: ignore[arg-type]
            page.goto(url, wait_until="load")
            yield visit
        finally:
            page.close()


_CONTRAST_JS = """(selector) => {
    const rgb = (s) => { const m = s.match(/[\\d.]+/g).map(Number);
        return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
    const lum = (c) => { const f = (v) => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
    const background = (el) => {
        for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.a > 0.5) return c;
        }
        return rgb(getComputedStyle(document.documentElement).backgroundColor);
    };
    return Array.from(document.querySelectorAll(selector))
        .filter((e) => e.getClientRects().length && e.textContent.trim())
        .map((e) => { const fg = lum(rgb(getComputedStyle(e).color)), bg = lum(background(e));
            const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
            return {selector, text: e.textContent.trim().slice(0, 40), ratio}; });
}"""
