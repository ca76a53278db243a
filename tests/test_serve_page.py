"""The page of `p4r serve`, in a real headless Chromium (Debian's, driven by Playwright) against a real
uvicorn server over a real embedded index. What the page shows is checked against the JSON API's answers."""

from __future__ import annotations

import os
import shutil

import pytest
from serve_support import serve

sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright: pip install -e '.[dev]'")
CHROMIUM = os.environ.get("P4R_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
if CHROMIUM is None:
    WHY = "no Chromium: install it with `apt-get install chromium chromium-driver` (make test does)"
    if os.environ.get("P4R_REQUIRE_BROWSER") == "1":  # CI has apt: there the page test must run, never skip
        pytest.fail(WHY, pytrace=False)
    pytest.skip(WHY, allow_module_level=True)

expect = sync_api.expect
USER = "demo-petite-dresses"
TEXT = "a flattering dress for a short woman"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.errors = []  # uncaught script errors: a test fails on any (HTTP errors are the page's to show)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server.url)
    yield page
    page.context.close()
    assert not page.errors, page.errors


def recommend(page, *, user: str | None = None, text: str | None = None, **fields: str) -> list[str]:
    """Fill the form, submit it, and return the item ids of the results shown."""
    if user:
        page.get_by_test_id("user-select").select_option(user)
    if text:
        page.get_by_test_id("text").fill(text)
    for name, value in fields.items():
        target = page.get_by_test_id(name)
        target.select_option(value) if name in ("mode", "fusion") else target.fill(value)
    with page.expect_response(lambda response: "/v1/recommend" in response.url):
        page.get_by_test_id("submit").click()
    # the button is disabled until the answer is drawn: reading sooner could return the previous answer's hits
    expect(page.get_by_test_id("submit")).to_be_enabled()
    expect(page.get_by_test_id("summary")).to_contain_text("items")
    return page.get_by_test_id("hit").evaluate_all("hits => hits.map(h => h.dataset.itemId)")


def test_the_script_never_writes_html():
    from p4r_search.serve.page import STATIC

    script = (STATIC / "app.js").read_text()
    assert not any(sink in script for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"))


def test_the_page_and_index_info_are_served(page, http):
    info = http.get("/v1/index").json()
    header = page.get_by_test_id("index-info")
    expect(header).to_contain_text(f"model {info['model']}")
    expect(header).to_contain_text(f"{info['items']} items")
    expect(header).to_contain_text(f"generation {info['generation']}")
    users = {u["user_id"]: u["interactions"] for u in http.get("/v1/users").json()}
    page.get_by_test_id("user-select").select_option(USER)
    expect(page.get_by_test_id("user-history-count")).to_have_text(f"{users[USER]} interactions in the history")


def test_a_text_shows_items_with_persona_share_and_evidence(page, http):
    shown = recommend(page, text=TEXT, k="5")
    answer = http.post("/v1/recommend", json={"text": TEXT, "k": 5}).json()
    assert shown == [h["item_id"] for h in answer["hits"]] and len(shown) == 5
    first, hit = page.get_by_test_id("hit").first, answer["hits"][0]
    expect(first.get_by_test_id("hit-open")).to_have_text(hit["title"])
    expect(first.get_by_test_id("persona-name")).to_have_text(hit["persona"]["name"])
    expect(first.get_by_test_id("persona-share")).to_have_text(f"{round(hit['persona']['support'] * 100)}% share")
    expect(first.get_by_test_id("persona-description")).to_have_text(hit["persona"]["description"])
    expect(first.get_by_test_id("evidence").first).to_contain_text(hit["evidence"][0]["text"])


def test_a_user_gets_the_same_items_in_the_same_order_as_the_api(page, http):
    shown = recommend(page, user=USER)
    answer = http.post("/v1/recommend", json={"user_id": USER, "k": 10}).json()
    assert shown == [h["item_id"] for h in answer["hits"]] and shown
    filtered = recommend(page, filters="categories=Dresses", k="3")
    answer = http.post("/v1/recommend", json={"user_id": USER, "k": 3, "filters": {"categories": ["Dresses"]}}).json()
    assert filtered == [h["item_id"] for h in answer["hits"]]


def test_hybrid_mode_shows_the_component_scores(page, http):
    expect(page.get_by_test_id("fusion")).to_be_hidden()  # only shown where it acts
    page.get_by_test_id("keywords").fill("soft stretch")
    expect(page.get_by_test_id("fusion")).to_be_visible()
    shown = recommend(page, text=TEXT, fusion="rrf", k="4")
    body = {"text": TEXT, "k": 4, "keywords": "soft stretch", "fusion": "rrf", "persona_weight": 0.5,
            "keyword_weight": 0.5, "mode": "knn"}
    answer = http.post("/v1/recommend", json=body).json()
    assert shown == [h["item_id"] for h in answer["hits"]]
    first = page.get_by_test_id("hit").first
    for name in ("cosine", "bm25", "fused"):
        value = answer["hits"][0]["scores"][name]
        expect(first.get_by_test_id(f"score-{name}")).to_have_text(f"{name}{value:.3f}")


def test_an_opened_item_shows_all_its_personas_and_the_history_behind_it(page, http):
    recommend(page, user=USER, k="3")
    first = page.get_by_test_id("hit").first
    item = first.get_attribute("data-item-id")
    first.get_by_test_id("hit-open").click()
    detail = page.get_by_test_id("detail")
    expect(detail.get_by_test_id("contribution").first).to_be_visible()
    card = http.get(f"/v1/items/{item}").json()
    why = http.post("/v1/explain", json={"user_id": USER, "item_id": item}).json()
    expect(detail.get_by_test_id("detail-title")).to_have_text(card["title"])
    expect(detail.get_by_test_id("item-persona")).to_have_count(len(card["personas"]))
    expect(detail.get_by_test_id("persona-score")).to_have_count(len(why["persona_scores"]))
    rows = detail.get_by_test_id("contribution")
    expect(rows).to_have_count(len(why["contributions"]))
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.itemId)") == [c["item_id"] for c in why["contributions"]]
    c = why["contributions"][0]
    expect(rows.first).to_contain_text(f"{c['recency_weight']:.2f} × {c['cosine_to_persona']:.3f}")
    expect(detail.get_by_test_id("explain-rank")).to_have_text(f"rank 1 of {why['catalog_size'] - why['seen']} unseen items")


@pytest.mark.parametrize(("fields", "message"), [
    ({"mode": "rescore"}, "Invalid request: mode 'rescore' needs keywords"),
    ({"k": "0"}, "Invalid request: k: Input should be greater than or equal to 1"),
    ({"filters": "colour=red"}, "Invalid request: invalid filter field 'colour'"),
])
def test_an_invalid_request_shows_the_reason_in_words(page, fields, message):
    page.get_by_test_id("text").fill(TEXT)
    for name, value in fields.items():
        target = page.get_by_test_id(name)
        target.select_option(value) if name == "mode" else target.fill(value)
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("error")).to_contain_text(message)
    expect(page.get_by_test_id("hit")).to_have_count(0)


def test_neither_user_nor_text_is_refused_in_words(page):
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("error")).to_contain_text("give a user_id, a history or a text")


def test_a_phone_never_scrolls_sideways(browser, server):
    page = open_page(browser, server.url, width=375, height=740)
    try:
        recommend(page, user=USER, keywords="soft stretch")
        page.get_by_test_id("hit-open").first.click()
        expect(page.get_by_test_id("contribution").first).to_be_visible()
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 375 + 1, f"the page is {width} px wide on a 375 px phone"
    finally:
        page.context.close()


def test_an_api_key_is_asked_for_and_kept_for_the_tab(browser, subset_index, subset, encoder):
    with serve(subset_index, encoder, subset["interactions"], api_key="s3cret-key") as live:
        page = browser.new_context().new_page()
        try:
            page.goto(live.url)
            expect(page.get_by_test_id("error")).to_contain_text("API key needed")
            page.get_by_test_id("api-key").fill("s3cret-key")
            page.get_by_test_id("api-key-save").click()
            expect(page.get_by_test_id("index-info")).to_contain_text("generation")
            expect(page.get_by_test_id("api-key-form")).to_be_hidden()
            assert recommend(page, user=USER, k="2")
            assert page.evaluate("sessionStorage.getItem('p4r-api-key')") == "s3cret-key"
        finally:
            page.context.close()


def test_a_screenshot_of_the_results_is_not_blank(page, tmp_path):
    from PIL import Image

    recommend(page, user=USER, k="4")
    page.get_by_test_id("hit-open").first.click()
    expect(page.get_by_test_id("item-persona").first).to_be_visible()
    path = tmp_path / "serve-page.png"
    page.screenshot(path=str(path))
    image = Image.open(path).convert("RGB")
    assert image.size == (1280, 900)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, f"only {len(colours)} colours: the screenshot looks blank"
    assert max(count for count, _ in colours) < 0.9 * image.width * image.height, "one colour fills the screenshot"
    box = page.get_by_test_id("hit").first.bounding_box()  # the first result is drawn, with its text
    assert box and box["y"] + box["height"] / 2 < image.height
    crop = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(min(box["y"] + box["height"], 900))))
    assert len(crop.getcolors(maxcolors=1 << 20)) > 20, "the first result shows no text"


def test_a_service_too_slow_to_answer_is_said_in_words_with_when_to_retry(browser, subset_index, subset, encoder):
    from p4r_search.serve import Limits

    limits = Limits(timeout_s=0.001, reload_interval_s=60)  # no request can be answered in a millisecond
    with serve(subset_index, encoder, subset["interactions"], limits=limits) as live:
        page = browser.new_context().new_page()
        try:
            page.goto(live.url)
            page.get_by_test_id("text").fill(TEXT)
            page.get_by_test_id("submit").click()
            expect(page.get_by_test_id("error")).to_contain_text("Service unavailable: the backend did not answer "
                                                                 "within 0.001 s (try again in 5 s)")
        finally:
            page.context.close()
