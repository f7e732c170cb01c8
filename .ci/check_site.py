"""Open every page of the built book in headless Chromium and check what a reader would see.

Usage: python .ci/check_site.py [_build/html]

The site is served on 127.0.0.1 and every request to any other host is blocked and counted as a
failure, so the check also proves the book works offline. For each page it asserts: no console
errors, no failed requests, every <img> decoded, math typeset by MathJax with no raw TeX left, no cell
error or traceback, no stderr output (except in cells tagged ``teaches-warning``, where a
warning is the lesson), no sampler log chatter, a title and the sidebar; it checks every internal link
and anchor, lists external links (without fetching them) in _build/external_links.txt, searches for
"shrinkage", checks that figures are opaque, and saves full-page screenshots of every chapter (and
one in dark mode) under _build/screenshots/. Exits non-zero on any failure.
"""

from __future__ import annotations

import functools
import http.server
import re
import sys
import threading
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# what PyMC, pytensor and progress bars print; none of it belongs on a page
CHATTER = [
    "Initializing NUTS",
    "Auto-assigning NUTS",
    "Sequential sampling",
    "Multiprocess sampling",
    "Sampling 4 chains",
    "Sampling: [",
    "━━━",
    "100.00% [",
]
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "screenshots"}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep CI logs readable
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def html_pages(root: Path) -> list[Path]:
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_DIRS:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if 'http-equiv="Refresh"' in text or "http-equiv=\"refresh\"" in text:
            continue  # the root index.html is a redirect stub
        pages.append(rel)
    return pages


@functools.lru_cache(maxsize=None)
def ids_in(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\sid="([^"]+)"', text))


def check_page(page, base: str, root: Path, rel: Path, problems: list[str], external: set[str]) -> dict:
    url = f"{base}/{rel.as_posix()}"
    events: list[str] = []
    page.on("console", lambda m: events.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: events.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: events.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: events.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    page.goto(url, wait_until="networkidle")
    has_math = page.locator(".math").count() > 0
    if has_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
        page.evaluate("() => MathJax.startup.promise")
    info = page.evaluate(
        """() => {
        const imgs = [...document.images];
        const body = document.querySelector('article') || document.body;
        const clone = body.cloneNode(true);
        clone.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml').forEach(e => e.remove());
        return {
          title: document.title,
          sidebar: document.querySelectorAll('.bd-sidebar-primary nav a, #pst-primary-sidebar nav a').length,
          images: imgs.length,
          broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
          mathjax: document.querySelectorAll('mjx-container').length,
          text: clone.innerText,
          // the page's text without the library's docstring examples (an API page shows a doctest
          // raising an error on purpose, and names PyMC's messages in prose): those are documentation,
          // not output; cell outputs and prose stay in
          fulltext: (() => { const c = document.body.cloneNode(true);
                             c.querySelectorAll('div.doctest, code.docutils.literal').forEach(e => e.remove());
                             return c.innerText; })(),
          errors: document.querySelectorAll('.output.traceback, .output.error, .cell:not(.tag_teaches-warning) .cell_output .stderr').length,
          links: [...document.querySelectorAll('a[href]')].map(a => a.href),
          favicon: (document.querySelector('link[rel~="icon"]') || {}).href || null,
        };
    }"""
    )
    name = rel.as_posix()

    def fail(msg: str) -> None:
        problems.append(f"{name}: {msg}")

    for event in events:
        fail(event)
    if not info["title"].strip() or "<no title>" in info["title"]:
        fail("no page title")
    # browsers ask every site for an icon: each page must name one, and it must load
    if not info["favicon"]:
        fail("no favicon link")
    elif page.request.get(info["favicon"]).status != 200:
        fail(f"favicon does not load: {info['favicon']}")
    if info["sidebar"] == 0:
        fail("no sidebar navigation")
    for src in info["broken"]:
        fail(f"image not decoded: {src}")
    if has_math and info["mathjax"] == 0:
        fail("math present but MathJax typeset nothing")
    for raw in ("$$", "\\frac", "\\(", "\\["):
        if raw in info["text"]:
            fail(f"raw TeX {raw!r} left in the page text")
    if info["errors"]:
        fail(f"{info['errors']} cell error/stderr output block(s)")
    if "Traceback (most recent call last)" in info["fulltext"]:
        fail("a traceback is shown")
    for chatter in CHATTER:
        if chatter in info["fulltext"]:
            fail(f"sampler/progress chatter on the page: {chatter!r}")

    for href in info["links"]:
        parsed = urlparse(href)
        if parsed.scheme in ("mailto", "javascript"):
            continue
        if parsed.hostname not in ("127.0.0.1", "localhost"):
            external.add(href)
            continue
        target = root / unquote(parsed.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            fail(f"broken internal link: {href}")
            continue
        if parsed.fragment and target.suffix == ".html" and unquote(parsed.fragment) not in ids_in(target):
            fail(f"missing anchor: {href}")
    return info


def main(root: Path = Path("_build/html")) -> int:
    root = root.resolve()
    if not (root / "search.html").exists():
        print(f"no built site at {root}; run `make book` first", file=sys.stderr)
        return 2
    shots = root.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    problems: list[str] = []
    external: set[str] = set()
    server, base = serve(root)
    blocked: dict[str, int] = defaultdict(int)

    def only_localhost(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked[route.request.url] += 1
            route.abort()

    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", only_localhost)
        for rel in html_pages(root):
            page = context.new_page()
            info = check_page(page, base, root, rel, problems, external)
            if rel.parts[0] == "chapters":
                page.screenshot(path=str(shots / f"{rel.stem}.png"), full_page=True)
            rows.append((rel.as_posix(), info["images"], info["mathjax"], len(info["links"])))
            page.close()

        # dark mode: the theme follows a data-theme attribute; figures must stay readable on it
        page = context.new_page()
        page.goto(f"{base}/chapters/pooling.html", wait_until="networkidle")
        page.evaluate("() => { document.documentElement.dataset.theme = 'dark'; document.documentElement.dataset.mode = 'dark'; }")
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / "pooling-dark.png"), full_page=True)
        page.close()

        # search: the reader's way in
        page = context.new_page()
        page.goto(f"{base}/search.html?q=shrinkage", wait_until="networkidle")
        try:
            page.wait_for_selector("#search-results li a, ul.search li a", timeout=15000)
            hits = page.eval_on_selector_all("#search-results li a, ul.search li a", "els => els.map(e => e.href)")
        except Exception:  # noqa: BLE001 - reported below as a failure
            hits = []
        if not any("chapters/pooling.html" in h for h in hits):
            problems.append(f"search.html?q=shrinkage does not list the pooling chapter (hits: {hits[:5]})")
        page.close()
        browser.close()
    server.shutdown()

    for url, count in blocked.items():
        problems.append(f"request to another host (blocked; the site must work offline): {url} x{count}")

    for png in sorted((root / "_images").glob("*.png")):
        with Image.open(png) as im:
            if im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema()[0] < 255:
                problems.append(f"figure with a transparent background (unreadable in dark mode): {png.name}")

    (root.parent / "external_links.txt").write_text("".join(f"{u}\n" for u in sorted(external)))
    width = max(len(r[0]) for r in rows)
    print(f"{'page':<{width}}  images  formulas  links")
    for name, images, formulas, links in rows:
        print(f"{name:<{width}}  {images:>6}  {formulas:>8}  {links:>5}")
    print(f"{len(rows)} pages checked; {len(external)} external links listed in _build/external_links.txt (not fetched)")
    print(f"screenshots in {shots}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("site check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])) if len(sys.argv) > 1 else main())
