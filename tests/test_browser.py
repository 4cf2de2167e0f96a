"""In a real browser (Debian's chromium, driven by Playwright): the main job, and a Web UI link behind Jupyter."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS, JupyterUnderBaseUrl, wait_for_http
from payments_lab.lab import open_lab
from payments_lab.processes import free_port, leftovers

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts"
"""Screenshots kept for a person to look at (the folder is not committed)."""

if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI needs Debian's chromium for the browser tests: `apt-get install chromium` (.ci/run does it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")


@pytest.fixture
async def page() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            await browser.close()


async def test_the_main_job_runs_lesson_00_in_a_browser(page, tmp_path: Path, isolated: dict[str, str]) -> None:  # noqa: ANN001
    """`payments-lab lab`, lesson 00 opened and run with Run → Run All Cells: every cell ran, no error, a progress bar."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / "00-welcome.ipynb", notebooks)  # JupyterLab saves what it runs
    port = free_port()
    said = tmp_path / "lab.log"  # what the lab and JupyterLab said, quoted if JupyterLab never answers
    with said.open("w") as log:
        lab = subprocess.Popen(
            [sys.executable, "-m", "payments_lab", "lab", "--no-browser", "--port", str(port), "--notebook-dir", str(notebooks)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=isolated,
        )
    try:
        url = next(line for line in iter(lab.stdout.readline, "") if line.startswith("JupyterLab:")).split()[-1]  # type: ignore[union-attr]
        base, token = url.split("/lab?token=")
        try:
            wait_for_http(f"{base}/api/status?token={token}")
        except AssertionError as err:
            raise AssertionError(f"{err}; the lab {'runs' if lab.poll() is None else f'exited ({lab.returncode})'} and said:\n"
                                 + "\n".join(said.read_text(errors="replace").splitlines()[-30:])) from None
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
    assert leftovers(isolated["PAYMENTS_LAB_MARK"]) == [], "no server, worker or JupyterLab left behind"


async def test_a_web_ui_link_opens_the_workflow_through_jupyter(page, jupyter_under_base_url: JupyterUnderBaseUrl) -> None:  # noqa: ANN001
    """JupyterLab under /user/learner-01/ with jupyter-server-proxy: the link a lesson shows displays that payment."""
    jupyter = jupyter_under_base_url
    base, token, origin = jupyter.base, jupyter.token, jupyter.origin
    lab = await open_lab("browser-link", server=jupyter.server)
    try:
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


async def test_a_web_ui_link_opens_a_payment_whose_id_holds_url_characters(page) -> None:  # noqa: ANN001
    """A "/", "?", "#" or "%" in a payment id stays part of the id in its link: the Web UI shows that payment."""
    lab = await open_lab("browser-odd-id")
    try:
        unique = free_port()
        payment_id = f"team/{unique}?x=1#%41"
        result = await lab.pay(lab.request("12.50", payment_id=payment_id), show_link=False)
        link = lab.link(result.payment_id)
        assert link.url is not None and link.url.endswith(f"/workflows/payment-team%2F{unique}%3Fx%3D1%23%2541")
        await page.goto(link.url)
        await page.get_by_text(f"payment-{payment_id}").first.wait_for(timeout=60_000)
        await page.get_by_text("Completed", exact=False).first.wait_for(timeout=30_000)
    finally:
        await lab.close()
