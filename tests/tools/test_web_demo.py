"""tools/web_demo.py: the page in a real browser (Debian's headless Chromium driven by
Selenium), and what the page runs (predictions, captioned attention maps, refused photos), in
the test process."""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gcnet.engine import Predictor, load_config

from ..helpers import REPO_ROOT, TINY_CONFIG, load_tool, tool_env

SEM_SEG_CONFIG = "configs/Cityscapes-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x1024_40k.py"
# The machine is shared and slow: generous limits for the server and the model.
SERVER_START_TIMEOUT = 300
RESULT_TIMEOUT = 300
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1400",
]


@pytest.fixture(scope="module")
def web_demo():
    """tools/web_demo.py as a module; it imports tools/demo.py as ``demo``, as when it runs."""
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        yield load_tool("web_demo")
    finally:
        sys.path.remove(str(REPO_ROOT / "tools"))


def photo_ratio(shared_data):
    with Image.open(shared_data / "demo" / "park_bench.jpg") as photo:
        return photo.width / photo.height


# ----------------------------------------------------------------------------- in the browser


def find_browser():
    """Debian's chromium and chromium-driver; the test fails (never skips) without them."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "The web demo test needs Debian's chromium and chromium-driver "
            f"(found chromium: {browser}, chromedriver: {driver}): apt-get install chromium chromium-driver"
        )
    return browser, driver


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory, web_demo):
    """The web demo of the tiny model on a free loopback port; yields (url, log file)."""
    folder = tmp_path_factory.mktemp("web_demo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = folder / "server.log"
    command = [
        sys.executable, "tools/web_demo.py", "--config-file", TINY_CONFIG, "--port", str(port),
        "--max-megapixels", "1", "--max-upload-mb", "1", "--examples", str(shared_data / "demo"),
    ]  # fmt: skip
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=tool_env({"GRADIO_TEMP_DIR": str(folder / "gradio")}),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"web_demo.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"web_demo.py did not serve {url} within {SERVER_START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, url):
    browser.get(url)
    WebDriverWait(browser, 120).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))


def upload(browser, path):
    browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(path))


def natural_sizes(browser, selector):
    return browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".filter(im => im.complete && im.naturalWidth > 0).map(im => [im.naturalWidth, im.naturalHeight])",
        selector,
    )


def wait_for_result(browser):
    """Wait until the predictions and an attention map are shown; returns the progress texts
    seen on the page meanwhile."""
    progress = set()
    deadline = time.monotonic() + RESULT_TIMEOUT
    while not (natural_sizes(browser, "#result img") and natural_sizes(browser, "#attention img")):
        if time.monotonic() > deadline:
            pytest.fail(f"no result on the page after {RESULT_TIMEOUT} s")
        progress.update(
            browser.execute_script(
                "return Array.from(document.querySelectorAll('.progress-level')).map(e => e.textContent.trim())"
            )
        )
        time.sleep(0.1)
    return progress


def shown_messages(browser):
    """The texts of the messages the page shows."""
    return [t for t in browser.execute_script(
        "return Array.from(document.querySelectorAll('[data-testid=toast-text]')).map(e => e.textContent.trim())"
    ) if t]  # fmt: skip


def wait_for_message(browser):
    """The text of the error message the page shows, once it is shown and then closed (gone
    from the page, so that the next call sees the next message)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        texts = shown_messages(browser)
        if texts:
            while shown_messages(browser) and time.monotonic() < deadline:
                browser.execute_script("document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")
                time.sleep(0.2)
            return texts[0]
        time.sleep(0.2)
    pytest.fail("the page showed no message")


def test_uploaded_photo_gets_predictions_and_attention_maps(browser, server, shared_data, tmp_path):
    url, log = server
    open_page(browser, url)
    upload(browser, shared_data / "demo" / "park_bench.jpg")
    progress = wait_for_result(browser)
    browser.save_screenshot(str(tmp_path / "web_demo.png"))
    ratio = photo_ratio(shared_data)
    (result,) = natural_sizes(browser, "#result img")
    maps = natural_sizes(browser, "#attention img")
    assert abs(result[0] / result[1] - ratio) < 0.01, result
    assert maps and all(abs(w / h - ratio) < 0.01 for w, h in maps), maps
    assert any(text.startswith("Running the model") for text in progress), progress
    captions = browser.find_element(By.CSS_SELECTOR, "#attention").text
    for block in ("res3.1", "res4.1", "res5.1"):  # the default: the last block of each stage
        assert re.search(rf"{re.escape(block)}: entropy [01]\.\d\d, peak at \(\d+, \d+\)", captions), captions
    assert re.search(r"s on cpu\.$", browser.find_element(By.CSS_SELECTOR, "#summary").text)
    assert (tmp_path / "web_demo.png").stat().st_size > 10_000
    assert log.read_text().count("Built the model on cpu") == 1
    assert not list((REPO_ROOT / "tools").glob("*.pyi"))  # the server writes nothing into the checkout


def test_bad_uploads_get_a_message_and_the_page_goes_on(browser, server, shared_data, tmp_path):
    url, log = server
    open_page(browser, url)
    (tmp_path / "notes.jpg").write_text("not a photo")
    upload(browser, tmp_path / "notes.jpg")
    assert wait_for_message(browser) == "notes.jpg is not an image this demo can read (an unknown format, truncated or corrupt)"
    Image.open(shared_data / "demo" / "park_bench.jpg").resize((1600, 1068)).save(tmp_path / "wide.jpg")
    upload(browser, tmp_path / "wide.jpg")
    assert wait_for_message(browser) == (
        "wide.jpg is too large: 1600x1068 is 1.7 megapixels, the demo takes at most 1; use a smaller copy"
    )
    noise = np.random.default_rng(0).integers(0, 256, (700, 900, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")  # 1.9 MB
    upload(browser, tmp_path / "noise.png")
    assert "exceed the maximum allowed size of 1.0 Mb" in wait_for_message(browser)
    # The page still works: an example photo gets its result.
    browser.find_element(By.CSS_SELECTOR, ".gallery-item, button.gallery").click()
    wait_for_result(browser)
    assert log.read_text().count("Built the model on cpu") == 1


# ----------------------------------------------------------------------------- in the process


@pytest.fixture(scope="module")
def tiny(web_demo):
    predictor = Predictor(load_config(TINY_CONFIG), device="cpu")
    return web_demo.WebDemo(predictor, max_pixels=1e6)


def test_run_draws_each_chosen_block_with_a_caption(tiny, shared_data):
    reports = []
    drawn, gallery, summary = tiny.run(
        str(shared_data / "demo" / "park_bench.jpg"), 0.5, ["res4.0", "res5.1"], report=lambda f, what: reports.append(f)
    )
    assert drawn.shape == (427, 640, 3) and drawn.dtype == np.uint8
    assert [caption.split(":")[0] for _, caption in gallery] == ["res4.0", "res5.1"]
    for picture, caption in gallery:
        assert picture.shape == (427, 640, 3)
        assert re.fullmatch(r"res\d\.\d: entropy [01]\.\d\d, peak at \((\d+), (\d+)\)", caption)
        x, y = map(int, re.search(r"\((\d+), (\d+)\)", caption).groups())
        assert 0 <= x < 640 and 0 <= y < 427
    assert reports == sorted(reports) and reports[0] == 0.0
    assert re.fullmatch(r"(\d+ instances? with a score of at least 0\.50|No instance .*)\. \d+\.\d s on cpu\.", summary)
    assert sorted(tiny.blocks) == ["res3.0", "res3.1", "res4.0", "res4.1", "res5.0", "res5.1"]
    assert tiny.default_blocks == ["res3.1", "res4.1", "res5.1"] and tiny.detects_instances


def test_nothing_shown_says_the_highest_score(tiny, shared_data):
    _, gallery, summary = tiny.run(str(shared_data / "demo" / "park_bench.jpg"), 1.0, [])
    assert gallery == []
    assert re.match(r"No instance with a score of at least 1\.00 \(highest score 0\.\d\d\)\. ", summary), summary


def test_refused_photos_and_blocks(tiny, shared_data, tmp_path):
    photo = shared_data / "demo" / "park_bench.jpg"
    (tmp_path / "truncated.jpg").write_bytes(photo.read_bytes()[:3000])
    (tmp_path / "notes.png").write_text("not a photo")
    Image.open(photo).resize((1300, 868)).save(tmp_path / "large.png")
    unreadable = "is not an image this demo can read (an unknown format, truncated or corrupt)"
    with pytest.raises(ValueError, match=re.escape(f"truncated.jpg {unreadable}")):
        tiny.run(str(tmp_path / "truncated.jpg"), 0.5, [])
    with pytest.raises(ValueError, match=re.escape(f"notes.png {unreadable}")):
        tiny.run(str(tmp_path / "notes.png"), 0.5, [])
    with pytest.raises(ValueError, match=r"large\.png is too large: 1300x868 is 1\.1 megapixels, the demo takes at most 1;"):
        tiny.run(str(tmp_path / "large.png"), 0.5, [])
    with pytest.raises(ValueError, match=r"Not GC blocks of the model: \['res2\.0'\]"):
        tiny.run(str(photo), 0.5, ["res2.0"])


def test_semantic_segmentation_config(web_demo, shared_data, tmp_path):
    Image.open(shared_data / "demo" / "park_bench.jpg").resize((160, 107)).save(tmp_path / "small.png")
    predictor = Predictor(load_config(str(REPO_ROOT / SEM_SEG_CONFIG), ["train.init_checkpoint="]), device="cpu")
    demo = web_demo.WebDemo(predictor, max_pixels=1e6)
    assert not demo.detects_instances and demo.default_blocks == ["sem_seg_head.context"]
    drawn, gallery, summary = demo.run(str(tmp_path / "small.png"), 0.5, demo.default_blocks)
    assert drawn.shape == (107, 160, 3)
    ((picture, caption),) = gallery
    assert picture.shape == (107, 160, 3) and caption.startswith("sem_seg_head.context: entropy ")
    classes = predictor.metadata.stuff_classes
    match = re.match(r"Largest classes: (\w[\w ]*) (\d+)%", summary)
    assert match and match.group(1) in classes, summary


def test_model_without_gc_blocks(web_demo, shared_data):
    predictor = Predictor(load_config(TINY_CONFIG, ["model.backbone.bottom_up.context_stages=[]"]), device="cpu")
    demo = web_demo.WebDemo(predictor, max_pixels=1e6)
    assert demo.blocks == {} and demo.default_blocks == []
    drawn, gallery, summary = demo.run(str(shared_data / "demo" / "park_bench.jpg"), 0.5, [])
    assert drawn.shape == (427, 640, 3) and gallery == [] and summary.endswith(" s on cpu.")


@pytest.mark.parametrize("args,message", [
    (["--config-file", "{tmp}/missing.py"], "{tmp}/missing.py: no such config file"),
    (["--config-file", TINY_CONFIG, "--opts", "model.no_such_key=1"], "model.no_such_key"),
    (["--config-file", TINY_CONFIG, "--examples", "{tmp}/none"], "--examples {tmp}/none: no such file or folder"),
    (["--config-file", TINY_CONFIG, "--port", "{busy}"], "--host 127.0.0.1 --port {busy}: cannot listen there"),
])  # fmt: skip
def test_bad_arguments_fail_before_the_model_is_built(web_demo, args, message, tmp_path, capsys, monkeypatch):
    import gcnet.engine

    monkeypatch.setattr(gcnet.engine, "Predictor", lambda *a, **k: pytest.fail("the model was built"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fill = dict(tmp=tmp_path, busy=busy.getsockname()[1])
        assert web_demo.main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("web_demo: ") and message.format(**fill) in err and err.count("\n") == 1


def test_help_answers_without_the_heavy_imports():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['web_demo.py', '--help']\n"
        "try:\n    runpy.run_path('tools/web_demo.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'gradio', 'detectron2', 'gcnet.engine', 'gcnet.analysis') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=tool_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--config-file" in result.stdout and "--max-megapixels" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
