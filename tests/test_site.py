"""The built website, page by page, in headless Chromium (marker `browser`), plus its
source checks.

`make test` builds the book first (`make book`) and then runs `pytest -m browser
tests/test_site.py`. The browser tests start from an existing `_build/html` (or
$DPO_SITE_HTML): missing build or missing Chromium means skip locally and fail under CI
(CI set).

Every built page is opened from file:// (the offline case: no server, no network) and
checked for: console errors and failed requests (Chromium's browser log at level
SEVERE), requests to any other host, typeset math (MathJax finished, mjx-container
present where the page has math, no mjx-merror, no undefined macro, no raw TeX
delimiters left in the text), every <img> loaded, every internal link pointing at an
existing file (and anchor), the Colab and Binder launch links on notebook pages pointing
at that notebook in the repository, and, on pages with a kernel-free slider, that moving
the slider changes the frame.
"""

from __future__ import annotations

import functools
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("DPO_SITE_HTML", ROOT / "_build" / "html")).resolve()
BOOK = (
    SITE.parents[1] if SITE.parent.name == "_build" else ROOT
)  # where _config.yml and chapters/ are
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
IN_CI = bool(os.environ.get("CI"))
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]


def built_pages() -> list[Path]:
    """Every HTML page of the site (not the theme's static assets or the copied
    sources)."""
    if not SITE.is_dir():
        return []
    return sorted(
        p
        for p in SITE.rglob("*.html")
        if not SKIP_DIRS & set(p.relative_to(SITE).parts[:-1])
    )


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


# --- source checks (no browser) -------------------------------------------------------


def test_toc_lists_every_chapter_in_plan_order():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "toc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _requirement_names(specs) -> set[str]:
    return {
        re.split(r"[<>=!~\[ ;@]", s.strip(), maxsplit=1)[0].lower().replace("_", "-")
        for s in specs
        if s.strip() and not s.strip().startswith("-")
    }


def test_environment_yml_installs_what_pyproject_declares():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"])
    for extra in ("book", "test", "widgets"):
        wanted |= _requirement_names(project["optional-dependencies"].get(extra, []))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(
        d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d
    )
    conda = {
        re.split(r"[<>=! ]", d, maxsplit=1)[0]
        for d in env["dependencies"]
        if isinstance(d, str)
    }
    assert "python" in conda and "pip" in conda
    assert wanted - _requirement_names(pip) == set(), (
        "add these to environment.yml's pip list"
    )
    torch_pin = re.search(
        r"^TORCH_SPEC \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M
    ).group(1)
    assert torch_pin in pip, f"environment.yml should pin {torch_pin} like the Makefile"
    assert (ROOT / "postBuild").stat().st_mode & 0o111, (
        "postBuild must be executable for Binder"
    )


def test_mathjax_is_pinned_to_3_2_2():
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/mathjax"]["version"] == "3.2.2"
    assert (
        json.loads((ROOT / "package.json").read_text())["dependencies"]["mathjax"]
        == "3.2.2"
    )
    for vendored in (
        ROOT / "_mathjax" / "mathjax" / "VERSION",
        SITE / "_static" / "mathjax" / "VERSION",
    ):
        if (
            vendored.is_file()
        ):  # what tools/vendor_mathjax.py copied, and what the site serves
            assert vendored.read_text().startswith("mathjax 3.2.2 "), vendored


# --- browser fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        skip_or_fail(f"no built book at {SITE}: run `make book` first")
    return SITE


@pytest.fixture(scope="module")
def driver(site):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        skip_or_fail(
            f"headless Chromium needs {missing} (Debian: apt-get install chromium "
            "chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER), options=options
    )
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(30)
    yield drv
    drv.quit()


def _page_ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(SITE)) for p in pages]


PAGES = built_pages()
# Without a build, one placeholder parameter makes the fixture skip (or fail under CI)
# visibly.
PAGE_PARAMS = PAGES or [SITE / "index.html"]


def open_page(driver, page: Path) -> list[dict]:
    """Load a page from file://, wait for scripts and math, and return its browser
    log."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(page.as_uri())
    deadline = time.time() + 30
    while driver.execute_script("return document.readyState") != "complete":
        assert time.time() < deadline, f"{page.name} did not finish loading"
        time.sleep(0.05)
    status = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) {
            done("no-mathjax"); return;
        }
        MathJax.startup.promise.then(
            () => done("typeset"), (err) => done("error: " + err));
        """
    )
    assert not status.startswith("error"), f"MathJax failed: {status}"
    # images: make lazy ones eager, then wait until every <img> has finished (or 10 s
    # passed)
    driver.execute_script(
        "document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });"
    )
    deadline = time.time() + 10
    while time.time() < deadline and not driver.execute_script(
        "return Array.from(document.images).every(i => i.complete && i.naturalWidth > "
        "0);"
    ):
        time.sleep(0.1)
    time.sleep(0.2)  # let late console messages (fonts, async scripts) arrive
    return driver.get_log("browser")


@functools.lru_cache(maxsize=None)
def anchors_in(path: Path) -> frozenset[str]:
    """The ids and names a built page defines (targets of #fragments)."""

    class Collector(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.found: set[str] = set()

        def handle_starttag(self, tag, attrs):
            for key, value in attrs:
                if key in ("id", "name") and value:
                    self.found.add(value)

    collector = Collector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(collector.found)


def notebook_source(page: Path) -> Path | None:
    """The repository notebook a built page comes from, if it comes from one."""
    rel = page.relative_to(SITE).with_suffix(".ipynb")
    source = BOOK / rel
    return source if source.is_file() else None


@functools.lru_cache(maxsize=None)
def repository() -> dict:
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    return {**config["repository"], **config["launch_buttons"]}


# --- the page checks ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGE_PARAMS, ids=_page_ids(PAGE_PARAMS))
def test_page(driver, site, page):
    problems: list[str] = []
    log = open_page(driver, page)

    # 1. no console errors, no failed requests (both are SEVERE entries in the browser
    #    log)
    problems += [f"console: {e['message']}" for e in log if e["level"] == "SEVERE"]

    # 2. nothing requested from another host (resources this page loaded)
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    problems += [
        f"remote request: {url}"
        for url in resources
        if not url.startswith(("file:", "data:", "blob:"))
    ]

    # 3. math
    math = driver.execute_script(
        """
        const text = (root) => { const c = root.cloneNode(true);
            c.querySelectorAll('pre, code, script, style, textarea, mjx-container, '
                               + 'mjx-assistive-mml')
             .forEach(n => n.remove()); return c.textContent; };
        const tex = (n) => { const c = n.closest('mjx-container');
            const doc = window.MathJax && MathJax.startup.document;
            const items = c && doc && doc.getMathItemsWithin
                ? doc.getMathItemsWithin(c) : [];
            return items.length ? items[0].math : n.textContent; };
        const red = Array.from(document.querySelectorAll('mjx-mtext'))
            .filter(n => getComputedStyle(n).color === 'rgb(255, 0, 0)').map(tex);
        return {
          sources: document.querySelectorAll(
              '.math, .MathJax_Preview, span.math, div.math').length,
          containers: document.querySelectorAll('mjx-container').length,
          errors: Array.from(document.querySelectorAll('mjx-merror')).map(tex),
          undefined: red,
          text: text(document.body),
        };
        """
    )
    if math["sources"]:
        if not math["containers"]:
            problems.append(
                f"{math['sources']} math elements but nothing typeset (no "
                "mjx-container)"
            )
    problems += [f"MathJax error: {e}" for e in math["errors"]]
    problems += [f"undefined TeX macro: {e}" for e in math["undefined"]]
    for delim in ("\\(", "\\)", "\\[", "\\]", "$$"):
        if delim in math["text"]:
            at = math["text"].index(delim)
            problems.append(
                f"raw TeX {delim!r} left in the text: "
                f"...{math['text'][max(0, at - 60) : at + 60]!r}"
            )

    # 4. every image loaded
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.currentSrc || i.src || "
        "i.outerHTML.slice(0, 120), "
        "i.complete, i.naturalWidth]);"
    )
    problems += [
        f"image not loaded: {src[:150]}"
        for src, complete, width in images
        if not (complete and width > 0)
    ]
    # ... and every image says what it shows to a reader who cannot see it (figures
    # carry alt text)
    no_alt = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.getAttribute('alt') || "
        "'').trim())"
        ".map(i => (i.currentSrc || i.src).slice(-60));"
    )
    problems += [f"image without alt text: {src}" for src in no_alt]

    # 5. internal links resolve to existing files (and anchors)
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href], link[href], "
        "script[src], img[src]'))"
        ".map(n => n.href || n.src);"
    )
    for url in sorted(set(links)):
        parts = urlsplit(url)
        if parts.scheme != "file":
            continue
        target = Path(unquote(parts.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken internal link: {url}")
        elif (
            parts.fragment
            and target.suffix == ".html"
            and unquote(parts.fragment) not in anchors_in(target)
        ):
            problems.append(f"missing anchor: {url}")
        elif SITE not in target.resolve().parents:
            problems.append(f"link leaves the site folder: {url}")

    # 6. launch links: exactly this notebook on Colab and Binder; none on pages that are
    #    not notebooks
    hrefs = [u for u in links if u.startswith("http")]
    repo = repository()
    colab = [u for u in hrefs if u.startswith(repo["colab_url"])]
    binder = [u for u in hrefs if u.startswith(repo["binderhub_url"])]
    source = notebook_source(page)
    if source is None:
        if colab or binder:
            problems.append(
                f"launch links on a page that is not a notebook: {colab + binder}"
            )
    else:
        org_repo = urlsplit(repo["url"]).path.strip("/")
        rel = source.relative_to(BOOK).as_posix()
        prefix = repo["path_to_book"].strip("/")
        rel = f"{prefix}/{rel}" if prefix else rel
        ui = "lab/tree" if repo.get("notebook_interface") == "jupyterlab" else "tree"
        want_colab = (
            f"{repo['colab_url']}/github/{org_repo}/blob/{repo['branch']}/{rel}"
        )
        want_binder = (
            f"{repo['binderhub_url']}/v2/gh/{org_repo}/{repo['branch']}"
            f"?urlpath={ui}/{rel}"
        )
        if colab != [want_colab]:
            problems.append(f"Colab link {colab}, expected [{want_colab}]")
        if binder != [want_binder]:
            problems.append(f"Binder link {binder}, expected [{want_binder}]")

    # 7. nothing scrolls sideways at a 1280-pixel-wide window: not the page, not a code
    #    cell, not an output (code is formatted to 88 columns so that it fits)
    wide = driver.execute_script(
        """
        const out = [];
        const doc = document.documentElement;
        if (doc.scrollWidth > doc.clientWidth + 1) {
            out.push(`page: ${doc.scrollWidth}px`);
        }
        document.querySelectorAll(
            'div.cell_input pre, div.cell_output pre, div.cell_output, '
            + 'div.highlight pre, '
            + 'div.output, article pre, article table'
        ).forEach(el => {
            if (el.scrollWidth > el.clientWidth + 1) {
                const line = (el.innerText || '').split('\\n')
                    .reduce((a, b) => (b.length > a.length ? b : a), '');
                const tag = `${el.tagName.toLowerCase()}.${el.className}`;
                out.push(`${tag}: ${el.scrollWidth}px `
                    + `> ${el.clientWidth}px: ${line.slice(0, 100)}`);
            }
        });
        return out;
        """
    )
    problems += [f"scrolls sideways: {w}" for w in wide]

    assert not problems, f"{page.relative_to(SITE)}:\n  " + "\n  ".join(problems)


def slider_pages() -> list[Path]:
    return [
        p
        for p in PAGES
        if 'class="anim-slider"' in p.read_text(encoding="utf-8", errors="replace")
    ]


@pytest.mark.browser
def test_a_notebook_chapter_has_a_kernel_free_slider(site):
    if not any(notebook_source(p) for p in PAGES):
        pytest.skip("no notebook chapter is built yet")
    with_slider = set(slider_pages())
    assert with_slider, (
        "no page has a kernel-free slider (dpolib.course.viz.kernel_free_slider)"
    )
    # CONTRIBUTING: every live ipywidgets slider has a kernel-free twin on the same page
    live = [
        p
        for p in PAGES
        if (src := notebook_source(p))
        and re.search(r"\binteract(ive)?\(", src.read_text())
    ]
    assert not [p.name for p in live if p not in with_slider], (
        "pages with a live slider but no kernel-free twin"
    )


@pytest.mark.browser
@pytest.mark.parametrize(
    "page",
    slider_pages() or [None],
    ids=lambda p: str(p.relative_to(SITE)) if p else "none",
)
def test_slider_changes_the_frame(driver, site, page):
    if page is None:
        pytest.skip("no page with a kernel-free slider")
    from selenium.webdriver.common.keys import Keys

    open_page(driver, page)
    sliders = driver.find_elements("css selector", "input.anim-slider")
    assert sliders
    for slider in sliders:
        anim_id = slider.get_attribute("id").removeprefix("_anim_slider")
        frames = int(slider.get_attribute("max")) + 1
        img = driver.find_element("id", f"_anim_img{anim_id}")
        readout = driver.find_elements("id", f"_dpolib_readout{anim_id}")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", slider)
        before = img.get_attribute("src")
        text_before = readout[0].text if readout else None
        assert before.startswith("data:image/png"), (
            "the slider's first frame is not shown"
        )
        if frames < 2:
            continue
        slider.click()
        slider.send_keys(
            Keys.END
        )  # a real keyboard move: fires the slider's input event
        assert int(slider.get_attribute("value")) == frames - 1
        after = img.get_attribute("src")
        assert after != before, "moving the slider did not change the frame"
        if readout:
            assert readout[0].text != text_before, (
                "the value readout did not follow the slider"
            )
        slider.send_keys(Keys.HOME)
        assert img.get_attribute("src") == before


@pytest.mark.browser
def test_citations_are_author_year_and_the_bibliography_lists_every_paper(site):
    intro = (site / "chapters" / "intro.html").read_text(encoding="utf-8")
    assert "Rafailov <em>et al.</em>, 2023" in intro, (
        "citations are not author-year (bibtex_reference_style)"
    )
    bibliography = (site / "chapters" / "bibliography.html").read_text(encoding="utf-8")
    keys = re.findall(
        r"^@\w+\{([^,]+),", (BOOK / "references.bib").read_text(), flags=re.M
    )
    entries = re.findall(r'role="doc-biblioentry"', bibliography)
    assert len(entries) == len(keys) > 0


def test_constraints_and_environment_yml_pin_the_same_versions():
    """make installs with constraints.txt, conda and Binder with environment.yml: the
    same versions of everything pyproject.toml declares (tools/pins.py --write)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import pins
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert pins.problems() == []
