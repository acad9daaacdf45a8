"""The page in a real browser: live microphone streaming, uploads and error messages.

Starts ``python run.py`` on a free port and drives Debian's Chromium through Playwright, with a
fake microphone that plays a generated speech WAV. Skipped when Chromium or Playwright is
missing. ``SER_TEST_SERVER_URL=http://...`` reuses a running server instead of starting one;
``UPDATE_SCREENSHOTS=1`` rewrites ``docs/screenshot-live.png``.

The AudioWorklet processor's arithmetic is also checked outside the browser, in Node.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

from ser_model.labels import EMOTIONS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HARNESS = ROOT / "tests" / "e2e" / "processor_harness.mjs"
PROCESSOR = ROOT / "static" / "js" / "recorder-processor.js"
SCREENSHOT = ROOT / "docs" / "screenshot-live.png"
INSECURE_HOST = "ser-insecure.test"  # mapped onto 127.0.0.1: a plain-http origin that is not localhost
SERVER_START_S = 180  # importing torch and loading the model on a busy 2-core machine
EVENT_TIMEOUT_MS = 45_000
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
]
RECORD = '[data-testid="record"]'
CURRENT = '[data-testid="current-emotion"]'
TIMELINE = '[data-testid="timeline"]'


# ---- test audio -------------------------------------------------------------------------------

def write_wav16(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM mono WAV (what Chrome's fake capture device reads)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def synthetic_voice(seconds: float = 4.0, rate: int = 16000) -> np.ndarray:
    """A voiced, speech-like signal: a gliding pitch with harmonics, syllable-rate bursts."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 16))
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.5
    return 0.25 * voice * syllables / np.abs(voice).max()


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    """About five seconds of speech: espeak-ng when installed, else a synthetic voice."""
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    espeak = shutil.which("espeak-ng")
    if espeak:
        text = "Hello there. I am so happy to see you today. What a wonderful surprise this is."
        subprocess.run([espeak, "-s", "150", "-w", str(path), text], check=True, capture_output=True)
        return path
    return write_wav16(path, synthetic_voice(), 16000)


# ---- the server -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throwaway_weights(folder: Path) -> Path:
    """An untrained model in a weights folder, for machines where none is shipped yet."""
    from ser_model.checkpoint import register, save_checkpoint
    from ser_model.model import ModelConfig, build_model

    config = ModelConfig()
    file = save_checkpoint(folder / "untrained.pt", build_model(config), config, meta={"note": "browser test"})
    register(folder, "untrained", file)
    return folder


def wait_for_http(url: str, process: subprocess.Popen | None, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"run.py exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{log.read_text()[-4000:] if log.exists() else ''}")


def warm_up(base: str, wav: Path) -> None:
    """One upload, so the first live windows are not shed while the model warms up."""
    boundary = "----ser-browser-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"warm.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(base + "/api/predict", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        urllib.request.urlopen(request, timeout=60).read()
    except OSError:
        pass  # the tests report what is wrong with uploads


@pytest.fixture(scope="module")
def server(tmp_path_factory, speech_wav) -> str:
    """Base URL of the real app (python run.py) on a free port."""
    external = os.environ.get("SER_TEST_SERVER_URL")
    if external:
        yield external.rstrip("/")
        return
    if not (ROOT / "run.py").exists():
        pytest.skip("run.py is not there yet")
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    command = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port)]
    if not (ROOT / "weights" / "registry.json").exists():
        command += ["--weights", str(throwaway_weights(tmp / "weights"))]
    log = tmp / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/", process, log, SERVER_START_S)
        warm_up(base, speech_wav)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# ---- the browser ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(speech_wav, tmp_path_factory):
    """Chromium with a fresh profile and a fake microphone that loops the speech WAV."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, accept_downloads=True,
            args=[*BROWSER_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}"],
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab; fails the test on any uncaught page error."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # The server's Content-Security-Policy must not block anything the page does.
    tab.on("console", lambda msg: errors.append(msg.text)
           if msg.type == "error" and "Content Security Policy" in msg.text else None)
    tab.set_default_timeout(20_000)
    yield tab
    tab.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def open_page(page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector('#connection-pill[data-state="connected"]')


def timeline_count(page) -> int:
    return int(page.get_attribute(TIMELINE, "data-count"))


def wait_for_blocks(page, more_than: int, timeout: int = EVENT_TIMEOUT_MS) -> None:
    """Until the timeline holds more than ``more_than`` blocks (a function, not a string: the CSP forbids eval)."""
    page.wait_for_function("([sel, n]) => Number(document.querySelector(sel).dataset.count) > n",
                           arg=[TIMELINE, more_than], timeout=timeout)


# ---- live recording ---------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_live_recording_shows_emotions_timeline_and_summary(page, server, tmp_path):
    open_page(page, server)
    record = page.locator(RECORD)
    assert record.get_attribute("aria-pressed") == "false"
    record.click()
    page.wait_for_selector(f'{RECORD}[aria-pressed="true"]')

    # A label among the seven, once the server has analysed the first hop of speech.
    page.wait_for_function(
        "([sel, labels]) => labels.includes(document.querySelector(sel).textContent.trim())",
        arg=[CURRENT, list(EMOTIONS)], timeout=EVENT_TIMEOUT_MS)
    chart = page.locator('[data-testid="probability-chart"] canvas')
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box["width"] > 100 and box["height"] > 100
    assert "Probabilities:" in chart.get_attribute("aria-label")

    # The timeline grows while audio keeps flowing (one block per hop, at least 2 per second).
    first = timeline_count(page)
    assert first >= 1
    page.wait_for_timeout(3000)
    wait_for_blocks(page, first + 1)
    assert page.locator(f"{TIMELINE} .tl-block").count() == timeline_count(page)

    # The level meter follows the fake microphone (and reads 0 only in its pauses).
    page.wait_for_function("() => Number(document.querySelector('#level-meter').getAttribute('aria-valuenow')) > 20",
                           timeout=5000)
    shot = tmp_path / "live.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(shot, SCREENSHOT)

    # Stop from the keyboard: the button is focusable and toggles with Space.
    record.focus()
    page.keyboard.press("Space")
    page.wait_for_selector("#summary:not([hidden])", timeout=EVENT_TIMEOUT_MS)
    assert record.get_attribute("aria-pressed") == "false"
    assert page.text_content("#summary-label").strip() in (*EMOTIONS, "no speech heard")
    assert page.locator("#summary-bars .bar-row").count() == len(EMOTIONS)
    assert " s of audio" in page.text_content("#summary-duration")
    # No message, or only the passing "server busy" notice of a loaded machine.
    assert page.get_attribute("#live-message", "data-code") in (None, "overloaded"), page.text_content("#live-message")

    with page.expect_download() as download:
        page.click("#download-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "t0,t1,speech,label,confidence," + ",".join(EMOTIONS)
    assert len(lines) - 1 >= timeline_count(page)
    with page.expect_download() as download:
        page.click("#download-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["summary"]["duration"] > 0
    assert {"t0", "t1", "speech", "label", "probabilities"} <= set(exported["events"][0])


@pytest.mark.browser
@pytest.mark.parametrize("name, code", [("NotAllowedError", "denied"), ("NotFoundError", "no-device")])
def test_microphone_errors_are_explained(page, server, name, code):
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('test', '%s'));" % name)
    open_page(page, server)
    page.click(RECORD)
    message = page.locator(f'#live-message[data-code="{code}"]')
    message.wait_for()
    assert "microphone" in message.text_content().lower()
    assert page.get_attribute(RECORD, "aria-pressed") == "false"


@pytest.mark.browser
def test_insecure_page_explains_https(page, server):
    port = server.rsplit(":", 1)[1]
    page.goto(f"http://{INSECURE_HOST}:{port}/")
    message = page.locator('#live-message[data-code="insecure"]')
    message.wait_for()
    assert "python run.py --https" in message.text_content()
    assert "localhost" in message.text_content()


@pytest.mark.browser
def test_unreachable_server_shows_reconnecting_banner(page, server):
    page.route("**/socket.io/**", lambda route: route.abort())
    page.goto(server + "/")
    page.wait_for_selector("#connection-banner:not([hidden])")
    assert "reconnecting" in page.text_content("#connection-banner").lower()
    assert page.get_attribute("#connection-pill", "data-state") == "reconnecting"
    page.click(RECORD)
    page.wait_for_selector('#live-message[data-code="unreachable"]')


@pytest.mark.browser
def test_page_without_vendor_files_degrades(page, server):
    # As after a checkout without `npm ci`: no Socket.IO client, no Chart.js.
    page.route("**/vendor/**", lambda route: route.fulfill(status=404, body="not found"))
    page.goto(server + "/")
    page.wait_for_selector('#live-message[data-code="no-client"]')
    assert "npm ci" in page.text_content("#live-message")
    assert page.locator('[data-testid="probability-chart"] .bar-row').count() == len(EMOTIONS)
    assert page.get_attribute("#connection-pill", "data-state") == "closed"


@pytest.mark.browser
@pytest.mark.slow
def test_recording_resumes_after_the_server_restarts(browser, speech_wav, tmp_path):
    """kill -9 the server mid-recording and start it again: the page re-sends start, the timeline
    continues after a marked gap, and a note says so; Stop still gives a summary."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    weights = throwaway_weights(tmp_path / "weights")
    command = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--weights", str(weights)]
    log = tmp_path / "server.log"

    def launch():
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        wait_for_http(base + "/", process, log, SERVER_START_S)
        return process

    process = launch()
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.set_default_timeout(20_000)
    try:
        open_page(tab, base)
        tab.click(RECORD)
        wait_for_blocks(tab, 1)
        process.kill()  # a crash: no goodbye to the clients
        process.wait(10)
        tab.wait_for_selector('#live-message[data-code="interrupted"]', timeout=EVENT_TIMEOUT_MS)
        assert tab.get_attribute(RECORD, "aria-pressed") == "true"  # still recording
        before = timeline_count(tab)
        process = launch()
        tab.wait_for_selector('#live-message[data-code="resumed"]', timeout=EVENT_TIMEOUT_MS)
        assert tab.get_attribute(TIMELINE, "data-gaps") == "1"
        wait_for_blocks(tab, before + 2)
        assert tab.get_attribute(RECORD, "aria-pressed") == "true"
        tab.click(RECORD)
        tab.wait_for_selector("#summary:not([hidden])", timeout=EVENT_TIMEOUT_MS)
        assert tab.text_content("#summary-label").strip() in (*EMOTIONS, "no speech heard")
    finally:
        tab.close()
        process.kill()
        process.wait(10)
    assert not errors, errors


# ---- uploads ----------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_upload_wav_shows_label_bars_timeline_and_player(page, server, speech_wav):
    open_page(page, server)
    page.set_input_files("#upload-file", str(speech_wav))
    assert page.get_attribute("#upload-audio", "src").startswith("blob:")
    page.click("#upload-submit")
    label = page.locator('[data-testid="result-label"]')
    label.wait_for(timeout=EVENT_TIMEOUT_MS)
    assert label.text_content().strip() in EMOTIONS
    assert page.locator("#result-bars .bar-row").count() == len(EMOTIONS)
    assert int(page.get_attribute("#result-timeline", "data-count")) >= 1
    assert page.locator("#upload-message").is_hidden()


@pytest.mark.browser
def test_upload_text_file_shows_the_servers_error(page, server, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 20)
    open_page(page, server)
    page.set_input_files("#upload-file", str(text))
    page.click("#upload-submit")
    message = page.locator("#upload-message")
    message.wait_for(timeout=EVENT_TIMEOUT_MS)
    assert message.text_content().strip()
    assert page.locator("#upload-result").is_hidden()


# ---- the AudioWorklet processor, in Node ------------------------------------------------------

def run_processor(rate: int, seconds: float, freqs: list[int], channels: int = 1) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = subprocess.run([node, str(HARNESS), str(PROCESSOR), str(rate), str(seconds),
                          ",".join(map(str, freqs)), str(channels)],
                         check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def tone_level(samples: np.ndarray, freq: float, rate: int = 16000) -> float:
    """Amplitude of ``freq`` in ``samples`` (Hann-windowed DFT bin, normalised to a full sine = 1)."""
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) / (window.sum() / 2)
    bins = np.fft.rfftfreq(len(samples), 1 / rate)
    i = int(np.argmin(np.abs(bins - freq)))
    return float(spectrum[max(i - 2, 0):i + 3].max())


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_processor_posts_16khz_int16_frames(rate):
    result = run_processor(rate, 2.0, [440], channels=2)
    assert result["name"] == "recorder-processor"
    assert set(result["frameLengths"][:-1]) == {4000}  # 250 ms frames, the last one flushed short
    assert result["flushed"]
    assert abs(len(result["samples"]) - result["inputSamples"] * 16000 / rate) <= 2
    samples = np.array(result["samples"]) / 32768
    assert tone_level(samples, 440) == pytest.approx(0.4, rel=0.05)  # stereo downmix keeps the level
    assert 35 <= result["levels"] <= 45  # ~20 level messages per second
    assert result["maxRms"] == pytest.approx(0.4 / math.sqrt(2), rel=0.05)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_processor_filters_before_downsampling(rate):
    # Without the low-pass, 12 kHz would fold back to 16 - 12 = 4 kHz at the 16 kHz output.
    alias = 16000 - 12000
    samples = np.array(run_processor(rate, 2.0, [440, 12000])["samples"]) / 32768
    assert tone_level(samples, 440) == pytest.approx(0.4, rel=0.05)
    assert tone_level(samples, alias) < 0.4 * 0.01  # at least 40 dB down
