"""The website (`camlab docs build`), built once for this module with warnings as errors, then read as a reader would:
its files, a crawler over every link, and pages opened in headless Chromium (driven by Playwright, as in
test_browser.py; those tests are skipped only where ``/usr/bin/chromium`` is missing)."""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

import camlab
from camlab import docsite
from camlab.course import CHAPTERS
from camlab.course.colab import colab_url

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site's html folder (the build raises on any Sphinx warning)."""
    html, _ = docsite.build(tmp_path_factory.mktemp("site"))
    return html


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    """The site served over HTTP on 127.0.0.1 (a free port), as GitHub Pages would serve it: yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Links(HTMLParser):
    """Every link (a href, img/script src, link href) and every element id of one page."""

    def __init__(self):
        super().__init__()
        self.links, self.ids, self.scripts, self.styles = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            self.links.append(attrs["src"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.links.append(attrs["href"])
            if "stylesheet" in (attrs.get("rel") or ""):
                self.styles.append(attrs["href"])


def parse(html: str) -> _Links:
    links = _Links()
    links.feed(html)
    return links


# --- the glossary and its links (no build needed) ------------------------------------------------------------------

def _glossary():
    import sys

    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import camlab_docs
        from glossary_terms import GLOSSARY
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    return GLOSSARY, camlab_docs


def test_glossary_has_the_course_terms_in_english_and_chinese_each_named_once():
    glossary, _ = _glossary()
    names = {term: chinese for terms, chinese, _ in glossary for term in terms}
    for english, chinese in [("CAM", "类激活图"), ("global average pooling", "全局平均池化"),
                             ("weakly supervised localization", "弱监督定位"), ("gradient saturation", "梯度饱和")]:
        assert chinese in names[english]
    lowered = [term.lower() for terms, _, _ in glossary for term in terms]
    assert len(lowered) == len(set(lowered)), "a term (ignoring case) names two entries"
    assert all(definition.strip() and chinese.strip() for _, chinese, definition in glossary)


def test_a_term_matches_whole_words_and_capitalised_terms_match_their_case():
    _, extension = _glossary()
    cam, pooling = extension.term_pattern("CAM"), extension.term_pattern("global average pooling")
    assert cam.search("the CAM map") and not cam.search("Grad-CAM") and not cam.search("a cam shaft")
    assert not cam.search("CAMs") and pooling.search("Global Average Pooling (GAP)")


# --- the built files ----------------------------------------------------------------------------------------------

def test_every_chapter_has_its_page_with_badge_learning_goals_and_notebook_link(site):
    for stem in CHAPTERS:
        page = site / "chapters" / f"{stem}.html"
        assert page.is_file(), f"no page for chapter {stem}"
        html = page.read_text(encoding="utf-8")
        assert colab_url(stem) in html, f"{stem}: no Open in Colab badge"
        assert 'id="learning-goals"' in html, f"{stem}: no learning goals section"
        assert f"notebooks/{stem}.ipynb" in html, f"{stem}: no link to the notebook file"
        downloads = [link for link in parse(html).links if link.endswith(f"/{stem}.ipynb") and "_downloads" in link]
        assert downloads and (page.parent / downloads[0]).resolve().is_file(), f"{stem}: no downloadable notebook"


def test_chapters_show_their_stored_figures(site):
    """Every image output stored in a notebook appears as an image file on its page (nothing is re-executed, so
    the counts match exactly)."""
    import json

    for stem in CHAPTERS:
        notebook = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
        stored = sum("image/png" in output.get("data", {}) for cell in notebook["cells"]
                     for output in cell.get("outputs", []))
        html = (site / "chapters" / f"{stem}.html").read_text(encoding="utf-8")
        shown = [src for src in parse(html).links if src.startswith("../_images/")]
        assert len(shown) == stored, f"{stem}: {stored} stored figures, {len(shown)} on the page"
        assert all((site / "chapters" / src).resolve().is_file() for src in shown)


def test_no_page_loads_a_script_or_stylesheet_from_the_network(site):
    """MathJax, the theme and search are files of the site: it works offline."""
    for page in site.rglob("*.html"):
        links = parse(page.read_text(encoding="utf-8"))
        remote = [url for url in links.scripts + links.styles if urllib.parse.urlparse(url).scheme]
        assert not remote, f"{page.relative_to(site)} loads {remote}"
    assert (site / "_static" / "mathjax" / "tex-chtml-full.js").is_file()


def test_first_use_of_a_glossary_term_on_a_chapter_links_to_the_glossary(site):
    glossary = parse((site / "glossary.html").read_text(encoding="utf-8")).ids
    html = (site / "chapters" / "01_cam.html").read_text(encoding="utf-8")
    links = re.findall(r'<a class="glossary-link reference external" href="../glossary.html#([^"]+)"[^>]*>([^<]+)</a>',
                       html)
    assert links, "chapter 01 links no glossary term"
    targets = [target for target, _ in links]
    assert len(targets) == len(set(targets)), "a term is linked more than once on one page"
    assert all(target in glossary for target in targets), "a glossary link points at no entry"
    assert any(text in ("global average pooling", "GAP") for _, text in links)


def test_every_registered_method_has_an_api_section_and_a_row_in_the_methods_table(site):
    api = parse((site / "api" / "methods.html").read_text(encoding="utf-8")).ids
    table = (site / "guide" / "methods.html").read_text(encoding="utf-8")
    for name, cls in camlab.METHODS.items():
        assert f"camlab.{cls.__name__}" in api, f"no API section for {cls.__name__}"
        assert f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{name}</span></code>" in table


def test_crawler_finds_no_broken_link_or_anchor(server):
    """Every page reachable from the index, every link, image, script and stylesheet on it answers (no 404), and
    every #anchor of an internal link exists on its page."""
    seen, queue, pages, missing = set(), [server], {}, []
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            missing.append(f"{url}: {error.code}")
            continue
        if url.endswith((".html", "/")):
            pages[url] = parse(body.decode("utf-8"))
            for link in pages[url].links:
                target = urllib.parse.urljoin(url, link)
                if target.startswith(server):
                    queue.append(urllib.parse.urldefrag(target).url)
    for url, links in pages.items():
        for link in links.links:
            target, fragment = urllib.parse.urldefrag(urllib.parse.urljoin(url, link))
            if fragment and target in pages and urllib.parse.unquote(fragment) not in pages[target].ids:
                missing.append(f"{url} -> {link}: no such anchor")
    assert not missing, "\n".join(missing)
    assert len(pages) > 30 and all(f"{server}chapters/{stem}.html" in pages for stem in CHAPTERS)


def test_the_pages_workflow_builds_and_uploads_the_documented_folder():
    workflow = (ROOT / ".github" / "workflows" / "docs.yml").read_text(encoding="utf-8")
    assert "camlab docs build --out build/docs" in workflow and "path: build/docs/html" in workflow
    assert docsite.DEFAULT_OUT == "build/docs"
    assert "actions/deploy-pages" in workflow


# --- in a browser -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route(re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort())  # offline, really
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def wait_for_math(page) -> None:
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("MathJax.startup.promise")


@needs_chromium
def test_index_opens_with_the_course_and_the_guide(page, server):
    page.goto(server)
    assert page.title().startswith("camlab")
    page.get_by_role("link", name="The course").first.wait_for()
    page.get_by_role("link", name="User guide").first.wait_for()


@needs_chromium
def test_chapter_page_shows_its_figures_and_rendered_math(page, server):
    page.goto(f"{server}chapters/02_gradcam.html")
    wait_for_math(page)
    assert page.locator("mjx-container").count() > 5, "MathJax rendered no formula"
    assert page.locator(".cell_output img").count() > 0
    page.wait_for_function("[...document.querySelectorAll('.cell_output img')].every(i => i.complete)")
    widths = page.eval_on_selector_all(".cell_output img", "images => images.map(i => i.naturalWidth)")
    assert widths and min(widths) > 0, "a figure did not load"


@needs_chromium
def test_search_finds_score_cam_and_lands_on_its_chapter(page, server):
    page.goto(f"{server}search.html?q=Score-CAM")
    chapter = page.locator("#search-results a[href*='chapters/07_variants.html']").first
    chapter.wait_for()   # results arrive one by one: wait for this one, not for the first
    chapter.click()
    page.wait_for_url(re.compile(r"chapters/07_variants\.html"))
    assert "Score-CAM" in page.locator("h1").first.inner_text()


@needs_chromium
def test_api_page_of_gradcam_shows_its_formula(page, server):
    page.goto(f"{server}api/methods.html#camlab.GradCAM")
    wait_for_math(page)
    section = page.locator("dl:has(> dt[id='camlab.GradCAM']) > dd").first
    formula = section.locator("mjx-container[display='true']").first
    formula.wait_for()
    text = unicodedata.normalize("NFKC", formula.locator("mjx-assistive-mml").inner_text())  # 𝛼 -> α
    assert all(symbol in text for symbol in ("α", "∂", "ReLU", "Grad-CAM")), text
