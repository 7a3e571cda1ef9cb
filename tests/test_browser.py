"""The widgets in a real browser: JupyterLab serves two small notebooks, headless Chromium (driven by Playwright)
runs their cells, changes the explorer's method and answers the quiz, and the page must show the result.

The unit tests (test_widgets.py) drive the same callbacks from Python; this test checks the part they cannot: that
the widgets render in JupyterLab and that a change in the browser reaches the kernel and comes back as a new picture.
Skipped only where Debian's Chromium (``apt-get install chromium``) is missing: Playwright's own browser download
is not used. JupyterLab runs with a fixed token on 127.0.0.1, with its configuration, data and runtime folders in a
temporary directory, so nothing of the user's Jupyter setup is read or written."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
TOKEN = "camlab-browser-test"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")

EXPLORER_CELLS = [
    "import camlab\nfrom camlab.lab import make_scenes\nfrom camlab.widgets import explore",
    "explorer = explore(camlab.load_model('lab_gap'), make_scenes(1, seed=0).images[0])\nexplorer",
]
QUIZ_CELLS = [
    "import torch\nfrom camlab.widgets import ClassQuiz",
    "quiz = ClassQuiz(torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0)), ['circle', 'circle'],\n"
    "                 ['circle', 'square'], images=torch.zeros(2, 3, 8, 8))\nquiz",
]


def write_notebook(path: Path, cells: list[str]) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, serving a temporary folder with the two notebooks: yields its base URL."""
    root = tmp_path_factory.mktemp("notebooks")
    home = tmp_path_factory.mktemp("jupyter")
    write_notebook(root / "explorer.ipynb", EXPLORER_CELLS)
    write_notebook(root / "quiz.ipynb", QUIZ_CELLS)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                                  os.environ.get("PYTHONPATH")])))
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={TOKEN}",
               f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = home / "server.log"
    with open(log, "w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/api/status?token={TOKEN}", server, log)
        yield base
    finally:
        server.send_signal(signal.SIGINT)  # JupyterLab shuts its kernels down on SIGINT (twice: no prompt)
        time.sleep(0.2)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(home, ignore_errors=True)


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
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


def open_and_run(page, base: str, name: str, cells: int) -> None:
    """Open ``name`` in JupyterLab and run its ``cells`` code cells with Shift+Enter, as a student would. Each
    notebook gets a workspace of its own, so that no other notebook's tab (and kernel status) is restored."""
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?token={TOKEN}")
    page.locator(".jp-Notebook").wait_for()
    page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle").wait_for()  # kernel connected
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    for number in range(1, cells + 1):
        page.keyboard.press("Shift+Enter")
        page.locator(".jp-InputPrompt", has_text=f"[{number}]:").wait_for()  # ran (numbers count from 1)


def assert_no_errors(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()


def test_explorer_picture_follows_the_method_chosen_in_the_browser(lab, page):
    open_and_run(page, lab, "explorer.ipynb", len(EXPLORER_CELLS))
    picture = page.locator("img.widget-image")
    status = page.locator(".widget-html-content", has_text="gradcam at 'features'")
    status.wait_for()
    before_src, before_pixels = picture.get_attribute("src"), picture.screenshot()
    method = page.locator(".widget-dropdown", has=page.locator("label", has_text="method")).locator("select")
    assert method.input_value() == "gradcam"
    method.select_option("scorecam")
    page.locator(".widget-html-content", has_text="scorecam at 'features'").wait_for()
    page.wait_for_function("src => document.querySelector('img.widget-image').src !== src", arg=before_src)
    assert picture.screenshot() != before_pixels
    layer = page.locator(".widget-dropdown", has=page.locator("label", has_text="layer")).locator("select")
    method.select_option("guided_backprop")
    page.locator(".widget-html-content", has_text="on the input; no layer").wait_for()
    assert layer.is_disabled()
    assert_no_errors(page)


def test_quiz_answered_in_the_browser_gives_feedback_and_a_score(lab, page):
    open_and_run(page, lab, "quiz.ipynb", len(QUIZ_CELLS))
    page.locator(".widget-html-content", has_text="question 1 of 2").wait_for()
    page.get_by_role("button", name="square").click()
    page.locator(".widget-html-content", has_text="✗ it was 'circle'").wait_for()
    page.locator(".widget-html-content", has_text="question 2 of 2 · score 0").wait_for()
    page.get_by_role("button", name="circle").click()
    page.locator(".widget-html-content", has_text="✓ right").wait_for()
    page.locator(".widget-html-content", has_text="done: 1 of 2 right (50%)").wait_for()
    assert page.get_by_role("button", name="circle").is_disabled()
    assert_no_errors(page)
