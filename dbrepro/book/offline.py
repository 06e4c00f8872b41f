"""``check``: the built site renders offline.

Serves the site on 127.0.0.1, renders a page with math and a figure in headless Chromium with every other
host name unresolvable, and checks that MathJax typeset the math (``mjx-container`` elements), the figure
loaded and no request failed; scans every page and stylesheet for resources loaded from http(s) at view
time (links a reader may follow are fine).
"""

from __future__ import annotations

import html.parser
import http.server
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import get_profile
from .layout import BookError, BuildLayout


_LOADING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut", "apple-touch-icon",
                 "manifest", "preconnect", "dns-prefetch", "prerender", "mask-icon"}
_REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+['"]([^'"]+)""", re.IGNORECASE)  # @import url(...) is a url()


class _ResourceScanner(html.parser.HTMLParser):
    """Collects the URLs an HTML page loads at view time (not the links a reader may follow)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag in ("script", "img", "iframe", "embed", "source", "audio", "video", "track", "input") and a.get("src"):
            self.loads.append(a["src"])
        if tag == "img" and a.get("srcset"):
            self.loads += [part.strip().split()[0] for part in a["srcset"].split(",") if part.strip()]
        if tag == "link" and a.get("href") and set(a.get("rel", "").lower().split()) & _LOADING_RELS:
            self.loads.append(a["href"])
        if tag == "object" and a.get("data"):
            self.loads.append(a["data"])
        if a.get("style"):
            self.loads += _css_urls(a["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.loads += _css_urls(data)


def _css_urls(css: str) -> list[str]:
    return _CSS_URL.findall(css) + _CSS_IMPORT.findall(css)


def remote_resources(site_dir: str | os.PathLike) -> list[str]:
    """Every http(s) or protocol-relative resource that a built page or stylesheet loads: ``file: url`` lines."""
    site_dir = Path(site_dir)
    found = []
    for path in sorted(site_dir.rglob("*")):
        if path.suffix == ".html":
            scanner = _ResourceScanner()
            scanner.feed(path.read_text(errors="replace"))
            urls = scanner.loads
        elif path.suffix == ".css":
            urls = _css_urls(path.read_text(errors="replace"))
        else:
            continue
        found += [f"{path.relative_to(site_dir)}: {u}" for u in urls if _REMOTE.match(u)]
    return found


def find_chromium() -> str | None:
    """Chromium's executable: ``$CHROMIUM`` or the Debian package's ``chromium`` on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def pages_with_math_and_figure(site_dir: Path) -> list[Path]:
    """Built pages that contain both math (Sphinx's ``math`` markup) and an image from ``_images/``."""
    pages = []
    for path in sorted(site_dir.glob("*.html")):
        text = path.read_text(errors="replace")
        if re.search(r'class="math[ "]', text) and re.search(r'<img[^>]+src="[^"]*_images/', text):
            pages.append(path)
    return pages


_PROBE = """
<script>
(function () {
  function report() {
    var imgs = Array.prototype.filter.call(document.images, function (i) { return i.src.indexOf('/_images/') >= 0; });
    var loaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    document.body.setAttribute('data-dbrepro-images', String(imgs.length));
    document.body.setAttribute('data-dbrepro-images-loaded', String(loaded.length));
  }
  window.addEventListener('load', function () {
    report();
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(function () {
        document.body.setAttribute('data-dbrepro-mathjax', 'done');
        report();
      });
    }
  });
})();
</script>
"""


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site; records every request; adds the probe script to the page under test."""

    probe_path = ""
    requests: list[tuple[str, int]] = []

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass

    def send_head(self):  # type: ignore[override]
        if self.path.split("?")[0] != self.probe_path:
            return super().send_head()
        path = Path(self.translate_path(self.path))
        body = path.read_text(errors="replace").replace("</body>", _PROBE + "</body>", 1).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


@dataclass
class CheckReport:
    """What the browser saw on the page under test, and what the scan of the whole site found."""

    page: str
    screenshot: Path | None
    math_elements: int
    images: int
    images_loaded: int
    mathjax_done: bool
    failed_requests: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        p = []
        if self.math_elements == 0:
            p.append(f"{self.page}: MathJax typeset no math (no mjx-container in the rendered page)")
        if not self.mathjax_done:
            p.append(f"{self.page}: MathJax did not finish starting up")
        if self.images == 0:
            p.append(f"{self.page}: the rendered page has no figure from _images/")
        elif self.images_loaded < self.images:
            p.append(f"{self.page}: {self.images - self.images_loaded} of {self.images} figures did not load")
        p += [f"request failed: {r}" for r in self.failed_requests]
        p += [f"loads a remote resource at view time: {r}" for r in self.remote]
        return p


def check(
    profile: str,
    *,
    build_dir: str | os.PathLike = "_build",
    page: str | None = None,
    chromium: str | None = None,
    out: Callable[..., None] = print,
) -> CheckReport:
    """Render one page with math and a figure in headless Chromium, offline; scan all pages for remote loads."""
    profile = get_profile(profile).name
    layout = BuildLayout(Path(build_dir).resolve(), profile)
    site = layout.site
    if not (site / "index.html").exists():
        raise BookError(f"no site at {site}: build it first (python -m dbrepro.book build --profile {profile})")
    chromium = chromium or find_chromium()
    if not chromium:
        raise BookError("Chromium not found: install the Debian package `chromium` (make browser) or set CHROMIUM")
    if page:
        target = site / (page if page.endswith(".html") else f"{page}.html")
        if not target.exists():
            raise BookError(f"--page {page}: {target} does not exist")
    else:
        candidates = pages_with_math_and_figure(site)
        if not candidates:
            raise BookError(f"no page in {site} has both math and a figure to check")
        target = candidates[0]

    started = time.perf_counter()
    remote = remote_resources(site)
    handler = type("Handler", (_SiteHandler,), {"probe_path": "/" + target.relative_to(site).as_posix(), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(site), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    layout.check_dir.mkdir(parents=True, exist_ok=True)
    screenshot = layout.check_dir / f"{target.stem}.png"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{handler.probe_path}"
        dom = _chromium_dump(chromium, url, screenshot)
    finally:
        server.shutdown()
        server.server_close()
    report = CheckReport(
        page=target.name,
        screenshot=screenshot if screenshot.exists() else None,
        math_elements=len(re.findall(r"<mjx-container\b", dom)),
        images=_int_attr(dom, "data-dbrepro-images"),
        images_loaded=_int_attr(dom, "data-dbrepro-images-loaded"),
        mathjax_done='data-dbrepro-mathjax="done"' in dom,
        # the browser asks for /favicon.ico by itself; the site does not reference one
        failed_requests=[f"{p} (HTTP {c})" for p, c in handler.requests if c >= 400 and p != "/favicon.ico"],
        remote=remote,
    )
    out(f"checked {target.name} offline in {time.perf_counter() - started:.1f} s: {report.math_elements} math "
        f"elements typeset, {report.images_loaded}/{report.images} figures loaded, "
        f"{len(handler.requests)} local requests, {len(remote)} remote resources; screenshot {report.screenshot}")
    return report


def _chromium_dump(chromium: str, url: str, screenshot: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="dbrepro-chromium-") as profile_dir:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile_dir}",
            # offline: every host name but the local server's fails to resolve
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1280,4000", "--hide-scrollbars", "--virtual-time-budget=5000",
            f"--screenshot={screenshot}", "--dump-dom", url,
        ]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise BookError(f"Chromium did not finish rendering {url} within 120 s") from None
    if result.returncode != 0 or "<html" not in result.stdout:
        # Chromium's stderr is noisy (no D-Bus in a container); its own page-load error is the useful line
        lines = [ln for ln in result.stderr.splitlines() if "dbus" not in ln.lower() and ln.strip()]
        raise BookError(f"Chromium failed on {url} (exit {result.returncode}): {lines[-1] if lines else 'no output'}")
    return result.stdout


def _int_attr(dom: str, name: str) -> int:
    m = re.search(rf'{name}="(\d+)"', dom)
    return int(m.group(1)) if m else 0
