"""cvaezoo-serve in a real browser (Debian's headless Chromium, driven by selenium with its chromedriver), and its
JSON API's answers to bad requests. Skips where Chromium, its driver or the serve extra is missing.

Screenshots go to a temporary folder, or to $CVAEZOO_SCREENSHOTS (experiments/page records them from there)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
import torch  # noqa: E402

from cvaezoo.runs import compose_config, instantiate_checked  # noqa: E402
from cvaezoo.serve import png_data_url  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
needs_chromium = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                    reason="needs Debian's chromium and chromium-driver")
#: the models the page is tested with: two Bayes-rule classifiers (one restyles), CVAE-3's predictive one
MODELS = ["mnist5k/cvae1", "mnist5k/cvae4", "mnist5k/cvae3"]
BLANK = png_data_url(torch.zeros(1, 28, 28))
LARGE = png_data_url(torch.zeros(1, 3000, 3000))  # a few kB of PNG that would decode to 9 megapixels


@pytest.fixture(scope="module")
def server():
    """cvaezoo-serve on a free local port, as a user starts it; its address."""
    process = subprocess.Popen([sys.executable, "-c", "from cvaezoo.serve import main; main()", *MODELS, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("cvaezoo-serve:"):
        process.kill()
        pytest.fail(f"cvaezoo-serve did not start: {line} {process.stderr.read()[-2000:]}")
    url = line.rsplit(" on ", 1)[1].strip()
    assert url.startswith("http://127.0.0.1:")  # this machine only, by default
    yield url
    process.terminate()
    process.wait(timeout=30)


def post(url: str, body: bytes | str, content_type: str = "application/json") -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_bad_requests_are_4xx_with_one_line(server):
    cases = [
        ("/api/classify", "not json", 400, "request body must be JSON"),
        ("/api/classify", "[1, 2]", 400, "must be a JSON object"),
        ("/api/classify", "{}", 422, "missing keys ['image']"),
        ("/api/classify", '{"image": "hello"}', 422, "image must be a data:image/...;base64 URL"),
        ("/api/classify", '{"image": "data:image/png;base64,AAAA"}', 422, "not a readable PNG or JPEG"),
        ("/api/classify", json.dumps({"image": BLANK, "models": ["nope"]}), 404, "model 'nope' is not loaded"),
        ("/api/classify", json.dumps({"image": BLANK, "models": "mnist5k/cvae1"}), 422, "models must be a list"),
        ("/api/restyle", json.dumps({"model": "mnist5k/cvae4", "image": BLANK}), 422, "cannot restyle"),
        ("/api/complete", json.dumps({"model": "mnist5k/cvae3", "test_index": 0}), 422, "does not complete quadrants"),
        ("/api/complete", json.dumps({"model": "mnist5k/cvae3"}), 422, "give either image or test_index"),
        ("/api/generate", '{"model": "nope", "label": 1}', 404, "model 'nope' is not loaded"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 10}', 422, "label must be an integer in [0, 10)"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": "3"}', 422, "label must be an integer"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 3, "n": 0}', 422, "n must be an integer in [1, 64]"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 3, "temperature": -1}', 422, "temperature must be"),
        ("/api/generate", '{"model": "mnist5k/cvae3", "label": 3}', 422, "does not generate images"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 3, "colour": 1}', 422, "unknown keys ['colour']"),
        ("/api/decode", '{"model": "mnist5k/cvae1", "label": 3, "eps": [1e9]}', 422, "eps must be a list of 1 to 16"),
        ("/api/restyle", '{"model": "mnist5k/cvae4", "image": "data:image/png;base64,AAAA"}', 422, "not a readable"),
        ("/api/classify", json.dumps({"image": BLANK, "models": ["mnist5k/cvae1"] * 100}), 422, "distinct names"),
        ("/api/classify", json.dumps({"image": LARGE}), 413, "at most 2048x2048"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 1' + "0" * 5000 + "}", 400, "request body must be JSON"),
        ("/api/generate", '{"model": ' + "[" * 100_000 + "]" * 100_000 + ', "label": 1}', 400, "request body must be JSON"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 1, "temperature": 1' + "0" * 400 + "}", 422, "temperature"),
        ("/api/generate", '{"model": "mnist5k/cvae1", "label": 1, "seed": 18446744073709551616}', 422, "seed must be"),
        ("/api/decode", '{"model": "mnist5k/cvae1", "label": 1, "eps": [1' + "0" * 400 + "]}", 422, "eps must be"),
    ]
    for path, body, status, message in cases:
        got_status, answer = post(server + path.lstrip("/"), body)
        assert got_status == status and message in answer["error"], (path, body[:80], got_status, answer)
        assert list(answer) == ["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]
    # a body declared larger than the bound is refused before it is read
    host, port = server.removeprefix("http://").strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/classify")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(50_000_000))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "request body larger than" in json.loads(response.read())["error"]
    connection.close()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server + "api/nothing", timeout=30)
    assert missing.value.code == 404 and "error" in json.loads(missing.value.read())


def test_a_quadrant_model_completes_a_test_digit_and_a_drawing(tmp_path):
    """CVAE-3 on Sohn et al.'s task (one epoch: the test checks the plumbing, not the quality)."""
    from cvaezoo.serve import ModelServer, read_image

    run = tmp_path / "quadrants"
    done = subprocess.run(["cvaezoo-train", "experiment=quadrants", "data.given_quadrants=2", "data.split=[400,100,100]",
                           "trainer.max_epochs=1", f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    server = ModelServer([str(run)])
    (described,) = server.describe()
    assert described["completes"] and described["given_quadrants"] == 2 and not described["classifies"]
    x, _ = instantiate_checked(compose_config(["run_dir=.", "data.binarize=none"]).data).split_tensors("test")
    for answer in (server.complete(str(run), test_index=3, n=5), server.complete(str(run), read_image(png_data_url(x[7])), n=5)):
        given = torch.tensor(np.asarray(read_image(answer["given"]).convert("L"), dtype=np.float32) / 255)
        assert len(answer["images"]) == 5 and given[:, 14:].abs().max() == 0  # the right half is not given
        for completion in answer["images"]:
            pixels = torch.tensor(np.asarray(read_image(completion).convert("L"), dtype=np.float32) / 255)
            assert torch.equal(pixels[:, :14], given[:, :14]) and pixels[:, 14:].max() > 0  # keeps the left, draws the right
    with pytest.raises(Exception, match="test_index must be an integer in"):
        server.complete(str(run), test_index=10_000)


def test_a_broken_model_at_start_up_is_one_line_naming_it(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    done = subprocess.run([sys.executable, "-c", "from cvaezoo.serve import main; main()", str(broken), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"cvaezoo-serve: error: {broken} is not a readable checkpoint")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1800"):
        options.add_argument(flag)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"cvaezoo-chromium-{os.getpid()}"
    shutil.rmtree(profile, ignore_errors=True)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def draw_digit(driver, pixels) -> None:
    """Draw a 28x28 digit on the 280x280 canvas with the pointer: one stroke along each horizontal run of its inked
    pixels, as a hand would fill them in."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "canvas")
    box = canvas.rect
    actions = ActionChains(driver, duration=0)
    for row in range(28):
        column = 0
        while column < 28:
            if pixels[row][column] <= 0.5:
                column += 1
                continue
            start = column
            while column < 28 and pixels[row][column] > 0.5:
                column += 1
            # offsets from the canvas's centre, in CSS pixels (the canvas is shown at its own size)
            x0, x1, y = (start * 10 + 5) - box["width"] / 2, ((column - 1) * 10 + 5) - box["width"] / 2, \
                (row * 10 + 5) - box["height"] / 2
            actions.move_to_element_with_offset(canvas, int(x0), int(y)).click_and_hold()
            actions.move_by_offset(int(x1 - x0) + 1, 0).release()
    actions.perform()


def wait_for(driver, condition, timeout: float = 60):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(condition))
    except TimeoutException:
        state = driver.execute_script("return [document.getElementById('status').textContent, "
                                      "JSON.stringify(document.getElementById('results').dataset)]")
        raise AssertionError(f"timed out waiting for {condition!r}; the page says {state}") from None


@needs_chromium
def test_the_page_classifies_a_drawn_digit_moves_a_slider_and_switches_the_label(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select

    shots = Path(os.environ.get("CVAEZOO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    x, y = instantiate_checked(compose_config(["run_dir=.", "data.binarize=none"]).data).split_tensors("test")
    browser.get(server)
    wait_for(browser, "return document.body.dataset.ready === '1'")
    assert browser.execute_script("return document.querySelectorAll('#gen-model option').length") == 2  # cvae1, cvae4
    answers = []
    for label in range(10):  # the first test digit of each class, drawn one after the other
        index = int((y == label).nonzero()[0])
        browser.find_element(By.ID, "clear").click()
        draw_digit(browser, x[index, 0].tolist())
        wait_for(browser, "const r = document.getElementById('results');"
                          "return r.dataset.count === '3' && !r.dataset.pending")
        cards = browser.find_elements(By.CSS_SELECTOR, ".model-result")
        assert [card.get_attribute("data-model") for card in cards] == MODELS
        predicted = [int(card.get_attribute("data-predicted")) for card in cards]
        answers.append((label, predicted))
        bars = cards[0].find_elements(By.CSS_SELECTOR, ".bar")
        widths = [float(bar.value_of_css_property("width").removesuffix("px")) for bar in bars]
        assert len(bars) == 10 and widths.index(max(widths)) == predicted[0]  # the longest bar is the answer
        if label == 3:
            browser.save_screenshot(str(shots / "classify.png"))
    right = sum(guess == label for label, predicted in answers for guess in predicted)
    # 30 answers (3 models x 10 drawings); drawn this way, the digits of every 17th test image get 0.93 right
    assert right >= 21, answers

    # generate: the first sample's z on sliders; moving one changes the decoded image
    wait_for(browser, "return document.querySelectorAll('#grid img').length === 16 && !document.getElementById('grid').dataset.pending")
    before = browser.find_element(By.ID, "slider-image").get_attribute("src")
    slider = browser.find_element(By.CSS_SELECTOR, ".slider[data-dim='0']")
    value = float(slider.get_attribute("value"))
    slider.send_keys(*([Keys.ARROW_RIGHT] * 15 if value < 1.5 else [Keys.ARROW_LEFT] * 15))
    wait_for(browser, f"const i = document.getElementById('slider-image'); return !i.dataset.pending && i.src !== {before!r}")
    # switching the label draws another grid
    grid = browser.execute_script("return [...document.querySelectorAll('#grid img')].map(i => i.src)")
    Select(browser.find_element(By.ID, "gen-label")).select_by_value("7")
    wait_for(browser, "return document.getElementById('grid').dataset.label === '7' && !document.getElementById('grid').dataset.pending")
    after = browser.execute_script("return [...document.querySelectorAll('#grid img')].map(i => i.src)")
    assert len(after) == 16 and not set(after) & set(grid)
    browser.save_screenshot(str(shots / "generate.png"))
    # restyle: the last drawing with every label
    browser.find_element(By.ID, "restyle").click()
    wait_for(browser, "return document.querySelectorAll('#restyle-grid img').length === 10")
    images = browser.execute_script("return [...document.querySelectorAll('#restyle-grid img')].map(i => i.src)")
    assert len(set(images)) == 10
    browser.save_screenshot(str(shots / "restyle.png"))
