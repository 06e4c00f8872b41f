"""``check``: the built site renders offline, and its pages fit a 1,300-px-wide window.

Serves the site on 127.0.0.1, renders pages in headless Chromium with every other host name unresolvable
(by default the first page with math and a figure, and the scorecard), and checks on each that MathJax
typeset the math (``mjx-container`` elements) and the figures loaded where the page has them, that no
request failed, and that the text column does not scroll sideways: neither the main column nor any
element in it is wider than the column (a probe script measures ``scrollWidth`` against ``clientWidth``
and every table's width against the article's; code blocks may scroll). Scans every page and stylesheet
for resources loaded from http(s) at view time (links a reader may follow are fine).
:func:`leaked_paths` finds folders of the build machine in a built site.
"""

from __future__ import annotations

import html
import html.parser
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

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


def leaked_paths(site_dir: str | os.PathLike, folders: Iterable[str | os.PathLike]) -> list[str]:
    """Every file of a built site that names one of ``folders`` (absolute paths of the build machine):
    ``"file: folder"`` lines. A folder counts when it stands as a path of its own, not inside a longer
    word (``/root`` is found in ``/root/x`` and ``"/root"``, not in ``/rootfs`` or ``a/root``)."""
    site_dir = Path(site_dir)
    needles = sorted({os.fspath(f).rstrip("/") for f in folders if len(os.fspath(f).rstrip("/")) > 1}, key=len,
                     reverse=True)
    # a colour code may stand right before a path (an IPython traceback): ESC[...m, or \u001b[...m in JSON
    start = rb"(?:(?:\x1b|\\u001b|\\x1b)\[[0-9;]*m|(?<![\w.~/-]))"
    patterns = [(n, re.compile(start + re.escape(n.encode()) + rb"(?![\w.-])")) for n in needles]
    found = []
    for path in sorted(p for p in site_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(site_dir)}: {n}" for n, pattern in patterns if pattern.search(data)]
    return found


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
  function fit() {
    var main = document.querySelector('#main-content') || document.querySelector('main') || document.body;
    var article = document.querySelector('article.bd-article') || main;
    var column = article.getBoundingClientRect();
    var wide = [];
    [main, article].forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' scrolls: ' + el.scrollWidth + ' > ' + el.clientWidth + ' px');
      }
    });
    Array.prototype.forEach.call(article.querySelectorAll('*'), function (el) {
      if (el.closest('pre, div.highlight, mjx-container, .MathJax')) { return; }
      var r = el.getBoundingClientRect();
      var what = el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
      if (el.tagName === 'TABLE' && r.right > column.right + 1) {
        wide.push(what + ' is ' + Math.round(r.width) + ' px wide, ' + Math.round(r.right - column.right) + ' px beyond the column');
      } else if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && /(auto|scroll)/.test(getComputedStyle(el).overflowX)) {
        wide.push(what + ' scrolls sideways: ' + el.scrollWidth + ' > ' + el.clientWidth + ' px');
      }
    });
    document.body.setAttribute('data-dbrepro-fit', JSON.stringify({column: Math.round(column.width), window: window.innerWidth, wide: wide}));
  }
  window.addEventListener('load', function () {
    report();
    fit();
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(function () {
        document.body.setAttribute('data-dbrepro-mathjax', 'done');
        report();
        fit();
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
    has_math: bool = True  # the built page has math markup, so MathJax must typeset some
    has_figure: bool = True  # the built page has an <img> from _images/
    column_width: int = 0  # the article's width in the rendered page (px)
    too_wide: list[str] = field(default_factory=list)  # what is wider than the column, or scrolls sideways
    measured: bool = True  # the fit probe ran

    @property
    def problems(self) -> list[str]:
        p = []
        if self.has_math and self.math_elements == 0:
            p.append(f"{self.page}: MathJax typeset no math (no mjx-container in the rendered page)")
        if not self.mathjax_done:
            p.append(f"{self.page}: MathJax did not finish starting up")
        if not self.measured:
            p.append(f"{self.page}: the layout probe did not run")
        p += [f"{self.page}: does not fit the text column ({self.column_width} px): {w}" for w in self.too_wide]
        if self.has_figure and self.images == 0:
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
    pages: Sequence[str] | None = None,
    width: int = 1300,
    chromium: str | None = None,
    out: Callable[..., None] = print,
) -> list[CheckReport]:
    """Render pages in headless Chromium, offline, in a ``width``-px window (default: the first page with math
    and a figure, and the scorecard when built); scan all pages for remote loads. One report per page."""
    profile = get_profile(profile).name
    layout = BuildLayout(Path(build_dir).resolve(), profile)
    site = layout.site
    if not (site / "index.html").exists():
        raise BookError(f"no site at {site}: build it first (python -m dbrepro.book build --profile {profile})")
    chromium = chromium or find_chromium()
    if not chromium:
        raise BookError("Chromium not found: install the Debian package `chromium` (make browser) or set CHROMIUM")
    targets = []
    for page in pages or []:
        target = site / (page if page.endswith(".html") else f"{page}.html")
        if not target.exists():
            raise BookError(f"--page {page}: {target} does not exist")
        targets.append(target)
    if not pages:
        candidates = pages_with_math_and_figure(site)
        if not candidates:
            raise BookError(f"no page in {site} has both math and a figure to check")
        targets = [candidates[0]] + [p for p in [site / "scorecard.html"] if p.exists() and p != candidates[0]]
    remote = remote_resources(site)
    layout.check_dir.mkdir(parents=True, exist_ok=True)
    return [_check_page(chromium, site, target, layout.check_dir, width, remote, out) for target in targets]


def _check_page(chromium: str, site: Path, target: Path, check_dir: Path, width: int, remote: list[str],
                out: Callable[..., None]) -> CheckReport:
    started = time.perf_counter()
    source = target.read_text(errors="replace")
    handler = type("Handler", (_SiteHandler,), {"probe_path": "/" + target.relative_to(site).as_posix(), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(site), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    screenshot = check_dir / f"{target.stem}.png"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{handler.probe_path}"
        dom = _chromium_dump(chromium, url, screenshot, width)
    finally:
        server.shutdown()
        server.server_close()
    fit_attr = re.search(r'data-dbrepro-fit="([^"]*)"', dom)
    fit = json.loads(html.unescape(fit_attr.group(1))) if fit_attr else {}
    has_math = bool(re.search(r'class="math[ "]', source))
    report = CheckReport(
        page=target.name,
        screenshot=screenshot if screenshot.exists() else None,
        math_elements=len(re.findall(r"<mjx-container\b", dom)),
        images=_int_attr(dom, "data-dbrepro-images"),
        images_loaded=_int_attr(dom, "data-dbrepro-images-loaded"),
        mathjax_done='data-dbrepro-mathjax="done"' in dom or not has_math,
        # the browser asks for /favicon.ico by itself; the site does not reference one
        failed_requests=[f"{p} (HTTP {c})" for p, c in handler.requests if c >= 400 and p != "/favicon.ico"],
        remote=remote,
        has_math=has_math,
        has_figure=bool(re.search(r'<img[^>]+src="[^"]*_images/', source)),
        column_width=int(fit.get("column", 0)),
        too_wide=list(fit.get("wide", [])),
        measured=bool(fit_attr),
    )
    out(f"checked {target.name} offline at {width} px in {time.perf_counter() - started:.1f} s: "
        f"{report.math_elements} math elements typeset, {report.images_loaded}/{report.images} figures loaded, "
        f"text column {report.column_width} px, {len(report.too_wide)} elements too wide, "
        f"{len(handler.requests)} local requests, {len(remote)} remote resources; screenshot {report.screenshot}")
    return report


def _chromium_dump(chromium: str, url: str, screenshot: Path, width: int = 1300) -> str:
    with tempfile.TemporaryDirectory(prefix="dbrepro-chromium-") as profile_dir:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile_dir}",
            # offline: every host name but the local server's fails to resolve
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--window-size={width},4000", "--hide-scrollbars", "--virtual-time-budget=5000",
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
