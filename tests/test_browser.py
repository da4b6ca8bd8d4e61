"""End to end in a real headless browser: sign up, confirm from the email, change a threshold,
unsubscribe. Debian's chromium driven by Playwright (never `playwright install`: no browser
downloads); the confirmation goes over SMTP to a local aiosmtpd. Screenshots of the home
page, a day page (phone width) and the emails land in the test's tmp folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from digestbot import render, subscribers
from digestbot.digest import select
from digestbot.outbox import DeliveryHistory
from tests.fakes.digests import DAY, add_paper
from tests.fakes.site import running_site
from tests.fakes.smtp import SmtpServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install '.[test]')")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium); "
    "the browser test needs a system browser and never downloads one")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _seed(store) -> None:
    add_paper(store, "2608.00001", 72)
    add_paper(store, "2608.00002", 95, title="Scaling <RL> for reasoning & $\\Delta$ rewards")
    add_paper(store, "2608.00003", 81, topic="agents")


async def test_signup_confirm_preferences_unsubscribe(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        async with running_site(smtp_url=smtp.url) as site:
            _seed(site.store)
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    context = await browser.new_context(timezone_id="Europe/Berlin",
                                                        locale="zh-CN")
                    page = await context.new_page()
                    await _walk_through(page, site, smtp, tmp_path)
                    phone = await browser.new_context(viewport={"width": 390, "height": 844},
                                                      device_scale_factor=2)
                    await _day_page(await phone.new_page(), site, tmp_path)
                finally:
                    await browser.close()


async def _walk_through(page, site, smtp, shots: Path) -> None:
    await page.goto(f"{site.url}/")
    await page.screenshot(path=str(shots / "home.png"), full_page=True)
    # The nonce'd script guessed the browser's zone.
    assert await page.input_value("#tz") == "Europe/Berlin"

    await page.fill("#email", "reader@example.org")
    await page.check("#t-post-training")
    await page.check("#t-agents")
    await page.fill("#threshold", "70")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=请查收邮件")

    sub = subscribers.by_address(site.store, "email", "reader@example.org")
    assert sub.status == "pending" and sub.tz == "Europe/Berlin"
    [received] = smtp.messages
    assert received.rcpt_tos == ["reader@example.org"]
    mail = received.message
    html = mail.get_body(("html",)).get_content()
    link = re.search(r'href="([^"]+/confirm\?token=[^"]+)"', html)[1].replace("&amp;", "&")
    assert link.startswith(site.url)
    await _screenshot_html(page, html, shots / "confirm-email.png")

    await page.goto(link)
    assert subscribers.get(site.store, sub.id).status == "pending"  # opening changes nothing
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=订阅成功")
    assert subscribers.get(site.store, sub.id).status == "active"

    await page.click("text=管理订阅")
    await page.wait_for_selector("text=管理订阅")
    assert await page.is_checked("#t-post-training") and await page.is_checked("#t-agents")
    await page.fill("input[name='thr.post-training']", "85")
    await page.click("text=保存 / Save")
    await page.wait_for_selector("text=已保存")
    thresholds = {s.topic: s.threshold for s in subscribers.subscriptions(site.store, sub.id)}
    assert thresholds == {"post-training": 85, "agents": 70}

    await page.click("text=退订 / Unsubscribe")
    await page.wait_for_selector("text=已退订")
    assert subscribers.get(site.store, sub.id).status == "unsubscribed"

    # The digest email this reader would have got, with its footer's preferences link.
    subscribers.set_status(site.store, sub.id, "active")
    digest = select(site.store, subscribers.get(site.store, sub.id), DAY,
                    history=DeliveryHistory(site.store))
    email = render.render_email(digest, preferences_url=f"{site.url}/preferences?token=example")
    await _screenshot_html(page, email.html, shots / "digest-email.png")


async def _day_page(page, site, shots: Path) -> None:
    await page.goto(f"{site.url}/d/{DAY}/post-training")
    assert await page.locator("article.entry").count() == 2
    details = page.locator("article.entry details").first
    assert await details.get_attribute("open") is None
    await details.locator("summary").click()  # folded abstracts expand
    assert await details.get_attribute("open") is not None
    # Readable on a phone: nothing wider than the screen.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await page.screenshot(path=str(shots / "day.png"), full_page=True)


async def _screenshot_html(page, html: str, path: Path) -> None:
    await page.set_content(html)
    await page.screenshot(path=str(path), full_page=True)
