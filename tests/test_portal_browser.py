"""The portal in a real browser: Playwright drives Debian's chromium (nothing is downloaded at
run time) through Envoy, as a tenant would open the link from an e-mail."""

from __future__ import annotations

import shutil

import pytest

from factories import insert_subscription
from portal_links import create_link

CHROMIUM = shutil.which("chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_a_tenant_opens_the_portal_link_and_its_invoice_pdf(stack, tenant_id, browser, tmp_path):
    sub = insert_subscription(tenant_id, plan="standard")
    reply = stack.track(sub.id, [{"endpoint": "/v1/search", "count": 4200}, {"endpoint": "/v1/items", "count": 800}])
    assert reply.status == 200, reply.body
    invoice = stack.generate_invoice(sub.id).json()
    url = create_link(stack, tenant_id).json()["url"]

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    response = page.goto(url)
    assert response.status == 200
    assert page.locator("h1").inner_text() == "Billing portal"
    assert page.locator("#plan-name").inner_text() == "Standard"
    assert page.locator("#usage-total").inner_text() == "5,000"
    chart = page.get_by_role("img", name="Daily requests from")
    assert chart.is_visible() and chart.bounding_box()["width"] > 300
    assert page.locator("#daily-chart rect.bar").count() >= 28
    tallest = max(
        float(height)
        for height in page.locator("#daily-chart rect.bar").evaluate_all(
            "bars => bars.map(bar => bar.getAttribute('height'))"
        )
    )
    assert tallest > 0
    page.screenshot(path=tmp_path / "portal.png", full_page=True)
    print(f"screenshot: {tmp_path / 'portal.png'}")
    assert (tmp_path / "portal.png").stat().st_size > 10_000

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.locator("#daily-chart").bounding_box()["width"] <= 390

    link = page.get_by_role("link", name=f"PDF of invoice {invoice['number']}")
    with page.expect_response(lambda r: r.url.endswith(f"/invoices/{invoice['id']}/pdf")) as followed:
        link.click()
    pdf = followed.value
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    # Chromium shows it in its PDF viewer; the bytes behind the same URL are the document.
    assert page.request.get(pdf.url).body().startswith(b"%PDF")
