"""In a real browser (Debian's chromium, driven by Playwright): the main job, and a Web UI link behind Jupyter."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import processes_marked
from payments_lab.lab import open_lab
from payments_lab.links import UiRoute
from payments_lab.processes import free_port, spawn, stop
from payments_lab.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts"
"""Screenshots kept for a person to look at (the folder is not committed)."""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI needs Debian's chromium for the browser tests: `apt-get install chromium` (.ci/run does it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")

# As root on a machine with no network but the package registries: no sandbox, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
async def page() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            await browser.close()


def _wait_for_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url)
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing answered at {url}"
            time.sleep(0.3)


async def test_the_main_job_runs_lesson_00_in_a_browser(page, tmp_path: Path) -> None:  # noqa: ANN001
    """`payments-lab lab`, lesson 00 opened and run with Run → Run All Cells: every cell ran, no error, a progress bar."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / "00-welcome.ipynb", notebooks)  # JupyterLab saves what it runs
    mark = secrets.token_hex(8)
    env = {**os.environ, "PAYMENTS_LAB_STATE_DIR": str(tmp_path / "state"), "PAYMENTS_LAB_MARK": mark}
    port = free_port()
    lab = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "lab", "--no-browser", "--port", str(port), "--notebook-dir", str(notebooks)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        url = next(line for line in iter(lab.stdout.readline, "") if line.startswith("JupyterLab:")).split()[-1]  # type: ignore[union-attr]
        base, token = url.split("/lab?token=")
        _wait_for_http(f"{base}/api/status?token={token}")
        await page.goto(f"{base}/lab/tree/00-welcome.ipynb?reset&token={token}")
        await page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
        await page.get_by_role("menuitem", name="Run", exact=True).click()
        await page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
        deadline = time.monotonic() + 120
        while True:
            shown = [text.strip() for text in await prompts.all_inner_texts()]
            if shown and all(re.fullmatch(r"\[\d+\]:", text) for text in shown):
                break
            assert time.monotonic() < deadline, f"the cells did not all run: {shown}"
            await asyncio.sleep(0.5)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        assert await errors.count() == 0, await errors.all_inner_texts()
        bar = page.locator(".widget-hprogress")
        assert await bar.count() == 1, "the lab check's progress bar rendered as a widget"
        await bar.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "lesson-00-run-all.png"))
    finally:
        lab.send_signal(2)
        lab.wait(timeout=60)
    deadline = time.monotonic() + 5
    while processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_marked(mark) == [], "no server, worker or JupyterLab left behind"


async def test_a_web_ui_link_opens_the_workflow_through_jupyter(page, tmp_path: Path) -> None:  # noqa: ANN001
    """JupyterLab under /user/learner-01/ with jupyter-server-proxy: the link a lesson shows displays that payment."""
    base = "/user/learner-01/"
    token = secrets.token_hex(16)
    port = free_port()
    server = EmbeddedServer(route=UiRoute("jupyter", base)).start()
    with open(tmp_path / "jupyter.log", "wb") as log:
        jupyter = spawn(
            [
                sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--ServerApp.base_url={base}",
                f"--IdentityProvider.token={token}", f"--notebook-dir={tmp_path}",
            ],
            log=log,
        )
    lab = await open_lab("browser-link", server=server)
    try:
        origin = f"http://127.0.0.1:{port}"
        _wait_for_http(f"{origin}{base}api/status?token={token}")
        result = await lab.pay("12.50", "EUR", show_link=False)
        link = lab.link(result.payment_id)
        assert link.url is not None and link.url.startswith(f"{base}proxy/absolute/")
        assert f'href="{link.url}"' in link._repr_html_()
        await page.goto(f"{origin}{base}lab?token={token}")  # logs in to Jupyter, as the learner is
        await page.goto(f"{origin}{link.url}")
        await page.get_by_text(f"payment-{result.payment_id}").first.wait_for(timeout=60_000)
        await page.get_by_text("Completed", exact=False).first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web-ui-through-jupyter.png"))
    finally:
        await lab.close()
        stop(jupyter)
        server.stop()
