"""The web playground at `/` of a real `serve`, in a real headless Chromium (Debian's chromium
and chromium-driver, driven by Selenium): it loads without a key, refuses a bad key with a
clear 401 message, runs typed code with streamed output and a plot, keeps its session across
runs, and says what a 429 means."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox.service.settings import KeyLimits, ServiceSettings
from service_server import Running, running_server
from support import IN_CI

pytestmark = pytest.mark.timeout(300)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WAIT = 90  # seconds: generous, the machine is shared

if CHROMIUM is None or DRIVER is None:
    if IN_CI:
        raise RuntimeError("chromium and chromedriver are missing: scripts/test.sh installs them")
    pytest.skip("chromium or chromedriver is not installed", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service as ChromeService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PLOT_CODE = (
    "import matplotlib\n"
    "matplotlib.use('Agg')\n"
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3], [3, 1, 2])\n"
    "plt.show()\n"
    "open('kept.txt', 'w').write('still here')\n"
    "print('hello', 6 * 7)\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = ServiceSettings(backend="local", limits=KeyLimits(sessions=1))
    with running_server(tmp_path_factory.mktemp("playground"), settings) as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1200,1100")
    driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _message(driver: Any) -> str:
    return str(driver.find_element(By.ID, "message").text)


def _wait_for(driver: Any, predicate: Any, what: str) -> None:
    WebDriverWait(driver, WAIT).until(predicate, message=f"waiting for {what}")


def test_page_loads_without_a_key_and_serves_no_secret(server: Running) -> None:
    with server.client() as http:
        page = http.get("/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/playground/playground.js", "/playground/playground.css"):
            assert http.get(asset).status_code == 200
        assert http.get("/playground/nope.js").status_code == 404
        assert "http://" not in page.text
        assert "https://" not in page.text  # no CDN: everything comes from this server


def test_run_code_see_output_and_plot_keep_session(
    server: Running, browser: Any, tmp_path: Path
) -> None:
    driver = browser
    key = server.keys.create("browser")
    find = driver.find_element
    driver.get(server.url + "/")
    assert "API key" in _message(driver)

    find(By.ID, "key").send_keys("not-a-key")
    find(By.ID, "save-key").click()
    _wait_for(driver, lambda d: "401" in _message(d), "the 401 message")

    find(By.ID, "key").clear()
    find(By.ID, "key").send_keys(key)
    find(By.ID, "save-key").click()
    _wait_for(driver, lambda d: "Key accepted" in _message(d), "the key to be accepted")
    options = [
        o.get_attribute("value")
        for o in find(By.ID, "language").find_elements(By.TAG_NAME, "option")
    ]
    assert "python" in options

    code = find(By.ID, "code")
    code.clear()
    code.send_keys(PLOT_CODE)
    find(By.ID, "run").click()
    _wait_for(driver, lambda d: _message(d) == "Done.", "the run to finish")
    assert "hello 42" in find(By.ID, "output").text
    plots = driver.find_elements(By.CSS_SELECTOR, "#plots img.plot")
    assert len(plots) == 1
    _wait_for(driver, lambda d: plots[0].get_property("naturalWidth") > 0, "the plot to render")
    driver.save_screenshot(str(tmp_path / "playground.png"))
    assert (tmp_path / "playground.png").stat().st_size > 0
    first_session = find(By.ID, "session-info").text
    assert first_session.startswith("session ses_")

    code.clear()
    code.send_keys("print(open('kept.txt').read())\n")
    find(By.ID, "run").click()
    _wait_for(driver, lambda d: _message(d) == "Done.", "the second run to finish")
    assert "still here" in find(By.ID, "output").text  # the same session: its file is there
    assert find(By.ID, "session-info").text == first_session

    # The key may hold one session: with another one open, the page's next one is refused.
    find(By.ID, "new-session").click()
    _wait_for(driver, lambda d: "new session" in _message(d), "the session to close")
    with server.client(key) as http:
        other = http.post("/v1/sessions", json={"lang": "python"})
        assert other.status_code == 201
        try:
            find(By.ID, "run").click()
            _wait_for(driver, lambda d: "429" in _message(d), "the 429 message")
            assert "limit" in _message(driver)
        finally:
            http.delete(f"/v1/sessions/{other.json()['id']}")

    # 503 (a backend that cannot start) cannot be caused on demand here: its wording is checked
    # through the page's own function.
    text = driver.execute_script(
        "return explain(new HttpError(503, 'docker is not running', null));"
    )
    assert text.startswith("503: the sandbox backend is unavailable")
