"""The analyst console in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed here when missing), against the admin API served by uvicorn
on real Redis and Kafka.

An analyst signs in, works the review queue from the keyboard, labels a decision (it leaves
the queue; the label is stored and published on ``labels``) and signs out. An admin previews
and saves a policy; a viewer sees it read-only and is refused a forged change. Screenshots of
every page go to ``var/console/`` for a person to look at (the README's are copies).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from services.api.app import create_app
from services.api.keys import create_key
from services.common.decision_store import REVIEW_QUEUE_KEY
from services.common.policy import Policy
from services.common.settings import PROJECT_ROOT, Settings
from services.stack.install import ensure_program
from services.stack.process import free_port
from tests.conftest import TrainedModel, wait_for
from tests.decided import decide_day, private_settings, published_labels

pytestmark = pytest.mark.e2e
BROWSER_REDIS_DB = 10
SHOTS = PROJECT_ROOT / "var" / "console"


@pytest.fixture(scope="module")
def served(trained: TrainedModel, kafka: str, redis_url: str) -> Iterator[tuple[str, Settings]]:
    """The admin API on a free port, over 600 decisions (scores of 0.01 and up in review)."""
    import uvicorn

    settings = private_settings(trained.settings.var_dir, BROWSER_REDIS_DB, "browser")
    decide_day(settings, 600, Policy(review_threshold=0.01, decline_threshold=0.9))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or None, 60, "the admin API to start")
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver

    chromium = ensure_program("chromium", "chromium")
    driver_path = ensure_program("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _tab_to(driver: Any, text: str, limit: int = 40) -> Any:
    """Press Tab until the focused element's text is ``text``; fail after ``limit`` presses."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused = driver.switch_to.active_element
        if focused.text.strip() == text:
            return focused
    pytest.fail(f"{text!r} is not reachable with the Tab key")


def _title(driver: Any, starts: str) -> None:
    """Wait (20 s at most) for the page whose title starts with ``starts``: a click or a key
    that submits a form returns before the next page has loaded on a busy machine."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.title.startswith(starts))


def test_an_analyst_works_the_queue_in_a_browser(
    served: tuple[str, Settings], browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, settings = served
    sync = redis.Redis(port=settings.redis.port, db=BROWSER_REDIS_DB)
    key = create_key(sync, "ana", "analyst")
    SHOTS.mkdir(parents=True, exist_ok=True)

    browser.get(f"{base}/console/queue")
    assert browser.title.startswith("Sign in")
    browser.save_screenshot(str(SHOTS / "login.png"))
    field = browser.find_element(By.CSS_SELECTOR, "label[for=api_key] + input")
    field.send_keys(key, Keys.ENTER)
    _title(browser, "Review queue")
    oldest = [m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 0, 49)]
    links = browser.find_elements(By.CSS_SELECTOR, "tbody td:first-child a")
    assert [a.text for a in links] == oldest and len(oldest) >= 5
    browser.save_screenshot(str(SHOTS / "queue.png"))

    _tab_to(browser, "Next unclaimed").send_keys(Keys.ENTER)
    first = oldest[0]
    _title(browser, f"Decision {first} ·")
    assert browser.find_element(By.ID, "claim").text == "ana"
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.waterfall rect")
    assert len(bars) >= 3 and all(b.size["width"] >= 1 for b in bars)
    browser.save_screenshot(str(SHOTS / "decision.png"))

    comment = browser.find_element(By.CSS_SELECTOR, "label[for=comment] + textarea")
    comment.send_keys("card testing pattern")
    browser.find_element(By.CSS_SELECTOR, "button[value=fraud]").click()
    _title(browser, "Review queue")
    assert f"{first}: fraud." in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    remaining = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody td:first-child a")]
    assert first not in remaining and remaining[0] == oldest[1]
    stored = sync.get(f"label:{first}:analyst")
    assert stored is not None and b'"is_fraud":true' in stored and b"card testing" in stored
    published = asyncio.run(published_labels(settings, 1))
    assert [(v["transaction_id"], v["is_fraud"]) for v in published] == [(first, True)]

    browser.find_element(By.LINK_TEXT, remaining[0]).click()
    _title(browser, "Decision ")
    browser.find_element(By.CSS_SELECTOR, "dd a").click()  # the card
    _title(browser, "Card ")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.scatter circle")
    browser.save_screenshot(str(SHOTS / "card.png"))
    browser.find_element(By.CSS_SELECTOR, "tbody tr:first-child td:nth-child(6) a").click()
    _title(browser, "Terminal ")
    assert browser.find_elements(By.CSS_SELECTOR, "#fraud-share dd")
    browser.save_screenshot(str(SHOTS / "terminal.png"))
    browser.find_element(By.LINK_TEXT, "Overview").click()
    _title(browser, "Overview")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.lines")) == 4
    browser.save_screenshot(str(SHOTS / "overview.png"))

    refused = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not refused, refused  # the stylesheet loads under the CSP; nothing is refused

    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    _title(browser, "Sign in")
    browser.get(f"{base}/console/queue")
    time.sleep(0.2)
    assert browser.title.startswith("Sign in")


def _sign_in(browser: Any, base: str, key: str, then: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{base}/console/login?next=/console/{then}")
    browser.find_element(By.CSS_SELECTOR, "label[for=api_key] + input").send_keys(key, Keys.ENTER)


def _sign_out(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    _title(browser, "Sign in")


def test_an_admin_edits_the_policy_and_a_viewer_is_refused(
    served: tuple[str, Settings], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    base, settings = served
    sync = redis.Redis(port=settings.redis.port, db=BROWSER_REDIS_DB)
    admin, viewer = create_key(sync, "ada", "admin"), create_key(sync, "vic", "viewer")
    before = sync.get("policy:current")

    _sign_in(browser, base, admin, "policy")
    _title(browser, "Policy")
    for name, value in (("review_threshold", "0.05"), ("decline_threshold", "0.5")):
        field = browser.find_element(By.CSS_SELECTOR, f"label[for={name}] + input")
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "preview-button").click()
    _title(browser, "Policy")
    summary = browser.find_element(By.ID, "preview-summary").text
    assert "would change outcome" in summary and not summary.startswith("0 of")
    assert sync.get("policy:current") == before, "a preview stores nothing"
    browser.save_screenshot(str(SHOTS / "policy.png"))
    browser.find_element(By.ID, "save-button").click()
    _title(browser, "Policy")
    assert "Saved policy v1." in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    stored = Policy.model_validate_json(sync.get("policy:current") or b"{}")
    assert (stored.version, stored.review_threshold, stored.decline_threshold) == (1, 0.05, 0.5)
    browser.find_element(By.LINK_TEXT, "Models").click()
    _title(browser, "Models")
    assert browser.find_elements(By.CSS_SELECTOR, "#models tr.active")
    browser.save_screenshot(str(SHOTS / "models.png"))
    _sign_out(browser)

    _sign_in(browser, base, viewer, "policy")
    _title(browser, "Policy")
    assert not browser.find_elements(By.ID, "policy-form")
    # a hand-made form with the viewer's own session token: refused for the role
    browser.execute_script(
        """const f = document.createElement('form');
        f.method = 'post'; f.action = '/console/policy';
        for (const [k, v] of [['csrf', arguments[0]], ['review_threshold', '0.9'],
                              ['decline_threshold', '0.95'], ['action', 'save']]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
          f.appendChild(i);
        }
        document.body.appendChild(f); f.submit();""",
        browser.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value"),
    )
    _title(browser, "Not allowed")
    assert Policy.model_validate_json(sync.get("policy:current") or b"{}").version == 1
    browser.back()
    _title(browser, "Policy")
    _sign_out(browser)
