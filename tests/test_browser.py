"""The page in a real browser: live microphone streaming, uploads, error messages, replay, the
Share, "How good is this?" and "Use the API" panels.

Starts ``python run.py`` on a free port and drives Debian's Chromium through Playwright, with a
fake microphone that plays a generated speech WAV. Skipped when Chromium or Playwright is
missing. ``SER_TEST_SERVER_URL=http://...`` reuses a running server instead of starting one;
``UPDATE_SCREENSHOTS=1`` rewrites ``docs/screenshot-live.png``.

Tests of what the page does with given server events (uncertain labels, a busy server, an empty
summary) replace the Socket.IO client with ``tests/e2e/fake_socketio.js`` (served in its place
through ``page.route``) and play the server's part through ``window.fakeStream.fire``.

The AudioWorklet processor's arithmetic is also checked outside the browser, in Node.
"""
from __future__ import annotations

import json
import math
import os
import shlex
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
FAKE_SOCKETIO = ROOT / "tests" / "e2e" / "fake_socketio.js"
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
RECORD_TEXT = '[data-testid="record"] .record-text'
CURRENT = '[data-testid="current-emotion"]'
TIMELINE = '[data-testid="timeline"]'
ADAPT = '[data-testid="adapt-voice"]'
ADAPT_STATUS = '[data-testid="adapt-status"]'
ADAPT_KEY = "ser.adaptVoice"  # localStorage key of the "Adapt to my voice" toggle


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


def read_wav(path: Path) -> tuple[int, int, int, int]:
    """(rate, channels, sample width in bytes, frames) of a WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def in_viewport(page, selector: str) -> bool:
    return page.evaluate("""(sel) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
    }""", selector)


# ---- a fake stream server (the page's part alone) -----------------------------------------------

def open_with_fake_stream(page, server: str) -> None:
    """The page with tests/e2e/fake_socketio.js in place of the Socket.IO client."""
    page.route("**/vendor/socket.io-client/**", lambda route: route.fulfill(
        status=200, content_type="application/javascript", body=FAKE_SOCKETIO.read_text()))
    open_page(page, server)


def fire(page, name: str, payload) -> None:
    """The fake server sends ``name`` with ``payload`` to the page."""
    page.evaluate("([name, payload]) => window.fakeStream.fire(name, payload)", [name, payload])


def emotion_event(t1: float, label: str | None = None, **extra) -> dict:
    """An `emotion` event of CONTRACTS.md: speech with ``label`` (70 %), or no speech."""
    probabilities = {e: (0.7 if e == label else 0.05) for e in EMOTIONS} if label else None
    return {"t0": max(0.0, t1 - 3), "t1": t1, "speech": label is not None, "label": label,
            "confidence": 0.7 if label else None, "probabilities": probabilities, **extra}


def summary_payload(label: str | None = "happy", **extra) -> dict:
    event = emotion_event(2.0, label)
    return {"duration": 2.0, "label": label, "confidence": event["confidence"],
            "probabilities": event["probabilities"], "segments": [], **extra}


def start_fake_recording(page) -> None:
    page.click(RECORD)
    page.wait_for_selector(f'{RECORD}[aria-pressed="true"]')


# ---- live recording ---------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_live_recording_shows_emotions_timeline_and_summary(page, server, tmp_path):
    open_page(page, server)
    record = page.locator(RECORD)
    assert record.get_attribute("aria-pressed") == "false"
    assert page.text_content(RECORD_TEXT) == "Record"
    record.click()
    page.wait_for_selector(f'{RECORD}[aria-pressed="true"]')
    assert page.text_content(RECORD_TEXT) == "Stop"

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
    live = page.locator("#live").bounding_box()
    page.screenshot(path=str(shot), full_page=True,  # the page's top down to the end of the live panel
                    clip={"x": 0, "y": 0, "width": page.viewport_size["width"], "height": live["y"] + live["height"] + 16})
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(shot, SCREENSHOT)

    # Stop from the keyboard: the button is focusable and toggles with Space.
    record.focus()
    page.keyboard.press("Space")
    page.wait_for_selector("#summary:not([hidden])", timeout=EVENT_TIMEOUT_MS)
    assert record.get_attribute("aria-pressed") == "false"
    assert page.text_content(RECORD_TEXT) == "Record"
    assert page.text_content("#summary-label").strip() in (*EMOTIONS, "no speech heard")
    assert page.locator("#summary-bars .bar-row").count() == len(EMOTIONS)
    assert " s of audio" in page.text_content("#summary-duration")
    # Nothing stale: even the passing "server busy" notice of a loaded machine is gone at Stop.
    assert page.locator("#live-message").is_hidden(), page.text_content("#live-message")

    # Replay and download of what was recorded: the WAV holds the audio the server analysed.
    assert page.locator("#replay").is_visible()
    assert page.get_attribute("#replay-audio", "src").startswith("blob:")
    with page.expect_download() as download:
        page.click("#download-wav")
    rate, channels, width, frames = read_wav(Path(download.value.path()))
    assert (rate, channels, width) == (16000, 1, 2)

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
    # Every frame the server received is in the WAV (the summary's duration is the audio it received).
    assert frames / rate == pytest.approx(exported["summary"]["duration"], abs=0.3)


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
    assert page.text_content(RECORD_TEXT) == "Record"
    assert "Press Record" in page.text_content("#chart-empty")  # not "Listening…": nothing is


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
    # The HTML fallback chart waits for speech like the real one: a sentence, no "0%" bars.
    assert page.locator("#chart-empty").is_visible()
    assert page.locator('[data-testid="probability-chart"] .bar-row').count() == 0
    assert page.get_attribute("#connection-pill", "data-state") == "closed"
    # No QR library: the panel says why, and the link and copy button still work.
    page.wait_for_selector("#share-qr-figure.is-missing")
    assert "npm ci" in page.text_content("#share-qr-caption")
    assert page.input_value("#share-url").startswith("http")


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
        # The note about the gap moved from the passing message into the summary.
        assert tab.locator("#live-message").is_hidden()
        assert "lost once" in tab.text_content("#summary-note") and tab.locator("#summary-note").is_visible()
        assert tab.locator("#replay").is_visible()  # the recording, gap included, can be played back
    finally:
        tab.close()
        process.kill()
        process.wait(10)
    assert not errors, errors


@pytest.mark.browser
@pytest.mark.slow
def test_adapt_to_my_voice_learns_the_voice_then_adapts(page, server, tmp_path):
    """"Adapt to my voice" on: Record sends calibrate_s, the status line says the voice is being
    learnt, then that it is adapted, and the events are adapted (badge, JSON export). Skipped when
    the model at weights/ cannot adapt (the server refuses calibrate_s with no_adaptation)."""
    open_page(page, server)
    try:
        page.evaluate("(key) => localStorage.removeItem(key)", ADAPT_KEY)
        page.reload()
        page.wait_for_selector('#connection-pill[data-state="connected"]')
        toggle = page.locator(ADAPT)
        assert not toggle.is_checked()  # off by default
        assert page.locator(ADAPT_STATUS).is_hidden()
        toggle.check()
        page.reload()  # remembered
        page.wait_for_selector('#connection-pill[data-state="connected"]')
        assert page.locator(ADAPT).is_checked()

        page.click(RECORD)
        page.wait_for_selector(f"{ADAPT_STATUS}[data-state]")
        if page.get_attribute(ADAPT_STATUS, "data-state") == "unavailable":
            # The fallback: recording goes on without adapting, with a notice.
            assert page.get_attribute("#live-message", "data-code") == "no-adaptation"
            assert page.get_attribute(RECORD, "aria-pressed") == "true"
            wait_for_blocks(page, 0)
            page.click(RECORD)
            page.wait_for_selector("#summary:not([hidden])", timeout=EVENT_TIMEOUT_MS)
            pytest.skip("the model at weights/ cannot adapt to a voice (start with calibrate_s was refused "
                        "with no_adaptation); the page fell back to recording without it")
        assert page.get_attribute(ADAPT_STATUS, "data-state") == "learning"
        assert page.text_content(ADAPT_STATUS) == "Speak calmly for a few seconds: learning your voice…"
        assert page.locator(ADAPT).is_disabled()  # applies from the next Record

        page.wait_for_selector(f'{ADAPT_STATUS}:is([data-state="adapted"], [data-state="failed"])',
                               timeout=EVENT_TIMEOUT_MS)
        assert page.get_attribute(ADAPT_STATUS, "data-state") == "adapted", page.text_content("#live-message")
        assert page.text_content(ADAPT_STATUS).startswith("Adapted to your voice")
        page.wait_for_selector("#adapted-badge:not([hidden])", timeout=EVENT_TIMEOUT_MS)

        page.click(RECORD)
        page.wait_for_selector("#summary:not([hidden])", timeout=EVENT_TIMEOUT_MS)
        assert page.locator("#adapted-badge").is_hidden()
        assert page.get_attribute(ADAPT_STATUS, "data-state") == "adapted"  # says how the summary was made
        assert page.locator("#live-message").is_hidden(), page.text_content("#live-message")
        with page.expect_download() as download:
            page.click("#download-json")
        events = json.loads(Path(download.value.path()).read_text())["events"]
        assert any(e.get("adapted") is True for e in events), events[-3:]
        assert all(isinstance(e.get("adapted"), bool) for e in events)
    finally:
        page.evaluate("(key) => localStorage.removeItem(key)", ADAPT_KEY)  # the other tests record unadapted


# ---- the page's states, with a fake stream server ---------------------------------------------

@pytest.mark.browser
def test_record_button_says_stop_and_passing_notices_clear(page, server):
    open_with_fake_stream(page, server)
    assert page.text_content(RECORD_TEXT) == "Record"
    start_fake_recording(page)
    assert page.text_content(RECORD_TEXT) == "Stop"
    fire(page, "error", {"code": "server_busy", "message": "busy"})
    page.wait_for_selector('#live-message[data-code="overloaded"]')
    page.evaluate("(summary) => { window.fakeStream.summary = summary; }", summary_payload())
    page.click(RECORD)
    page.wait_for_selector("#summary:not([hidden])")
    assert page.text_content(RECORD_TEXT) == "Record"
    assert page.locator("#live-message").is_hidden()  # the busy notice did not outlive the recording

    # A notice about one recording ("no summary") is cleared by the next Record.
    start_fake_recording(page)
    page.evaluate("() => { window.fakeStream.summary = null; }")
    page.click(RECORD)
    page.wait_for_selector('#live-message[data-code="no-summary"]')
    start_fake_recording(page)
    assert page.locator("#live-message").is_hidden()
    assert page.locator("#summary").is_hidden()


@pytest.mark.browser
def test_empty_states_show_no_zero_bars(page, server):
    open_with_fake_stream(page, server)
    chart = page.locator('[data-testid="probability-chart"] canvas')
    assert page.locator("#chart-empty").is_visible() and not chart.is_visible()
    start_fake_recording(page)
    fire(page, "emotion", emotion_event(0.5))  # silence: still nothing to show
    assert page.locator("#chart-empty").is_visible() and not chart.is_visible()
    fire(page, "emotion", emotion_event(1.0, "sad"))
    page.wait_for_selector("#chart-empty", state="hidden")
    assert chart.is_visible()
    assert "sad 70%" in chart.get_attribute("aria-label")
    assert page.text_content("#current-confidence") == "70% confidence"
    # The server holds its label until another leads clearly (hysteresis): the page says so.
    held = emotion_event(1.5, "sad")
    held["probabilities"] = {**held["probabilities"], "sad": 0.3, "angry": 0.4}
    held["confidence"] = 0.3
    fire(page, "emotion", held)
    assert page.text_content("#current-confidence") == "30% confidence · angry leads narrowly (40%)"

    # A summary without speech: a sentence, no bars.
    page.evaluate("(summary) => { window.fakeStream.summary = summary; }", summary_payload(None))
    page.click(RECORD)
    page.wait_for_selector("#summary:not([hidden])")
    assert page.text_content("#summary-label") == "no speech heard"
    assert page.locator("#summary-bars .bar-row").count() == 0
    assert "No speech" in page.text_content("#summary-bars")

    # The next recording starts from the placeholder again.
    start_fake_recording(page)
    assert page.locator("#chart-empty").is_visible() and not chart.is_visible()


@pytest.mark.browser
def test_uncertain_labels_are_greyed_with_unsure(page, server, tmp_path):
    open_with_fake_stream(page, server)
    start_fake_recording(page)
    current = page.locator(CURRENT)
    fire(page, "emotion", emotion_event(0.5, "happy", uncertain=True))
    assert current.text_content() == "happy"  # the contract's hook keeps the bare label
    assert page.locator("#current-unsure").is_visible()
    assert page.inner_text(".now-line").lower() == "happy · unsure"  # (inner_text applies text-transform)
    assert "is-uncertain" in current.get_attribute("class")
    assert "· unsure" in page.get_attribute(f"{TIMELINE} .tl-block", "title")

    fire(page, "emotion", emotion_event(1.0, "happy", uncertain=False))
    assert page.locator("#current-unsure").is_hidden()
    assert page.inner_text(".now-line").lower() == "happy"
    assert "is-uncertain" not in current.get_attribute("class")
    fire(page, "emotion", emotion_event(1.5, "angry"))  # no field at all: as before issue 12
    assert page.locator("#current-unsure").is_hidden()
    titles = page.eval_on_selector_all(f"{TIMELINE} .tl-block", "(blocks) => blocks.map((b) => b.title)")
    assert sum("unsure" in t for t in titles) == 1, titles

    page.evaluate("(summary) => { window.fakeStream.summary = summary; }", summary_payload("happy", uncertain=True))
    page.click(RECORD)
    page.wait_for_selector("#summary:not([hidden])")
    assert page.text_content("#summary-label") == "happy"
    assert page.locator("#summary-unsure").is_visible()

    # The upload result, with the server's answer faked the same way.
    probabilities = emotion_event(1.0, "sad")["probabilities"]
    answer = {**summary_payload("sad", uncertain=True), "segments": [
        {"start": 0.0, "end": 1.0, "speech": True, "label": "sad", "probabilities": probabilities, "uncertain": True},
        {"start": 1.0, "end": 2.0, "speech": True, "label": "sad", "probabilities": probabilities}]}
    page.route("**/api/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                             body=json.dumps(answer)))
    page.set_input_files("#upload-file", str(write_wav16(tmp_path / "voice.wav", synthetic_voice(2.0), 16000)))
    page.click("#upload-submit")
    page.wait_for_selector("#upload-result:not([hidden])")
    assert page.text_content('[data-testid="result-label"]') == "sad"
    assert page.locator("#result-unsure").is_visible()
    titles = page.eval_on_selector_all("#result-timeline .tl-block", "(blocks) => blocks.map((b) => b.title)")
    assert [("unsure" in t) for t in titles] == [True, False], titles


@pytest.mark.browser
def test_session_badge_follows_the_events_and_the_upload(page, server, tmp_path):
    """After the first seconds of speech the server judges relative to the speech so far
    (`session: true`): a "tuned to this voice" badge by the label while such events arrive."""
    open_with_fake_stream(page, server)
    start_fake_recording(page)
    badge = page.locator('[data-testid="session-badge"]')
    fire(page, "emotion", emotion_event(0.5, "happy", session=False))
    assert badge.is_hidden()
    fire(page, "emotion", emotion_event(1.0, "happy", session=True))
    assert badge.is_visible() and badge.text_content() == "tuned to this voice"
    fire(page, "emotion", emotion_event(1.5, "sad"))  # no field: hidden, as before
    assert badge.is_hidden()
    fire(page, "emotion", emotion_event(2.0, "sad", session=True))
    page.evaluate("(summary) => { window.fakeStream.summary = summary; }", summary_payload("sad"))
    page.click(RECORD)
    page.wait_for_selector("#summary:not([hidden])")
    assert badge.is_hidden()  # gone at Stop

    page.route("**/api/predict", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps({**summary_payload("sad"), "session": True})))
    page.set_input_files("#upload-file", str(write_wav16(tmp_path / "voice.wav", synthetic_voice(2.0), 16000)))
    page.click("#upload-submit")
    page.wait_for_selector("#upload-result:not([hidden])")
    assert page.locator('[data-testid="result-session"]').is_visible()


@pytest.mark.browser
def test_adapt_to_my_voice_states_and_fallback(page, server, tmp_path):
    """With the fake server: calibrate_s in start (again after a resume), the fallback when the model
    cannot adapt, a failed calibration's notice, the adapted badge; an upload with a reference."""
    open_with_fake_stream(page, server)
    sent = lambda: page.evaluate("() => window.fakeStream.sent.startPayloads")  # noqa: E731
    status = page.locator(ADAPT_STATUS)
    try:
        page.check(ADAPT)
        # A model that cannot adapt refuses calibrate_s: the page starts again without it and says so.
        page.evaluate("""() => { window.fakeStream.ack = (p) => (p.calibrate_s
            ? { ok: false, code: 'no_adaptation', error: 'this model cannot adapt to a voice' }
            : { ok: true, session: 'fake' }); }""")
        start_fake_recording(page)
        fire(page, "error", {"code": "no_adaptation", "message": "this model cannot adapt to a voice"})
        assert [p.get("calibrate_s") for p in sent()] == [4, None]
        assert status.get_attribute("data-state") == "unavailable" and status.is_visible()
        assert page.get_attribute("#live-message", "data-code") == "no-adaptation"
        page.evaluate("(summary) => { window.fakeStream.summary = summary; }", summary_payload())
        page.click(RECORD)
        page.wait_for_selector("#summary:not([hidden])")
        assert page.locator("#live-message").is_hidden()

        # Not enough speech for a reference: a notice with the reason, recording goes on unadapted.
        page.evaluate("() => { window.fakeStream.ack = { ok: true, session: 'fake' }; }")
        start_fake_recording(page)
        assert status.get_attribute("data-state") == "learning"
        assert status.text_content() == "Speak calmly for a few seconds: learning your voice…"
        assert page.locator("#live-message").is_hidden()
        fire(page, "calibrated", {"ok": False, "error": "a voice profile needs at least 2 s of speech"})
        assert status.get_attribute("data-state") == "failed"
        assert "at least 2 s of speech" in page.text_content('#live-message[data-code="adapt-failed"]')
        fire(page, "emotion", emotion_event(1.0, "sad", adapted=False))
        assert page.locator("#adapted-badge").is_hidden() and page.text_content(CURRENT) == "sad"
        page.click(RECORD)
        page.wait_for_selector("#summary:not([hidden])")

        # Adapted: status, then a badge by the label while adapted events arrive.
        start_fake_recording(page)
        assert page.locator(ADAPT).is_disabled()
        fire(page, "emotion", emotion_event(0.5, "happy", adapted=False))
        assert page.locator("#adapted-badge").is_hidden()
        fire(page, "calibrated", {"ok": True, "speech_s": 4.2})
        assert status.get_attribute("data-state") == "adapted"
        assert status.text_content() == "Adapted to your voice (from 4.2 s of speech)"
        fire(page, "emotion", emotion_event(1.0, "happy", adapted=True))
        assert page.locator("#adapted-badge").is_visible()
        # A resumed stream (the server lost the session) must learn the voice again.
        before = len(sent())
        fire(page, "error", {"code": "idle_timeout", "message": "idle"})
        page.wait_for_selector('#live-message[data-code="resumed"]')
        assert len(sent()) == before + 1 and sent()[-1]["calibrate_s"] == 4
        assert status.get_attribute("data-state") == "learning"
        assert page.locator("#adapted-badge").is_hidden()
        page.click(RECORD)
        page.wait_for_selector("#summary:not([hidden])")
        assert page.locator("#adapted-badge").is_hidden() and status.is_hidden()  # stopped before it learnt
        assert not page.locator(ADAPT).is_disabled()

        # Off: no calibrate_s, no status line.
        page.uncheck(ADAPT)
        start_fake_recording(page)
        assert "calibrate_s" not in sent()[-1] and status.is_hidden()
    finally:
        page.evaluate("(key) => localStorage.removeItem(key)", ADAPT_KEY)

    # Upload with a reference of the same voice (the server's answer faked): the field is sent, the
    # result says it is adapted.
    bodies: list[bytes] = []

    def answer(route):
        bodies.append(route.request.post_data_buffer or b"")
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps({**summary_payload("sad"), "adapted": bodies[-1].count(b'name="reference"') == 1}))

    page.route("**/api/predict", answer)
    wav = write_wav16(tmp_path / "voice.wav", synthetic_voice(2.0), 16000)
    page.set_input_files("#upload-file", str(wav))
    page.click("#upload-submit")
    page.wait_for_selector("#upload-result:not([hidden])")
    assert page.locator("#result-adapted").is_hidden()
    page.set_input_files("#upload-reference", str(wav))
    page.click("#upload-submit")
    page.wait_for_selector("#result-adapted:not([hidden])")
    assert [b'name="reference"' in b for b in bodies] == [False, True]


@pytest.mark.browser
def test_replay_and_download_what_was_sent(page, server):
    open_with_fake_stream(page, server)
    assert page.locator("#replay").is_hidden() and page.locator("#download-wav").is_hidden()
    start_fake_recording(page)
    page.wait_for_function("() => window.fakeStream.sent.frames >= 8")  # about 2 s of audio
    page.evaluate("(summary) => { window.fakeStream.summary = summary; }", summary_payload())
    page.click(RECORD)
    page.wait_for_selector("#replay:not([hidden])")
    sent = page.evaluate("() => window.fakeStream.sent")
    assert "10 minutes" in page.text_content("#replay-note")
    assert "nothing is stored on the server" in page.text_content("#replay-note")

    with page.expect_download() as download:
        page.click("#download-wav")
    assert download.value.suggested_filename.endswith(".wav")
    rate, channels, width, frames = read_wav(Path(download.value.path()))
    assert (rate, channels, width) == (16000, 1, 2)
    assert frames * width == sent["audioBytes"]  # exactly the frames the page sent, nothing else

    # The player plays it: the browser decodes the WAV to the same length.
    page.wait_for_function("() => document.querySelector('#replay-audio').readyState >= 1")
    duration = page.evaluate("() => document.querySelector('#replay-audio').duration")
    assert duration == pytest.approx(frames / rate, abs=0.01)

    # The next Record forgets the old recording and frees its object URL.
    old = page.get_attribute("#replay-audio", "src")
    assert load_audio_url(page, old) == "loaded"
    start_fake_recording(page)
    assert page.locator("#replay").is_hidden()
    assert page.get_attribute("#replay-audio", "src") is None
    assert load_audio_url(page, old) == "error"  # revoked (fetch is no test: the CSP's connect-src forbids blob:)


def load_audio_url(page, url: str) -> str:
    """'loaded' when an <audio> can read ``url``, else 'error'."""
    return page.evaluate("""(url) => new Promise((resolve) => {
        const audio = new Audio();
        audio.onloadedmetadata = () => resolve('loaded');
        audio.onerror = () => resolve('error');
        audio.src = url;
    })""", url)


@pytest.mark.browser
def test_recording_keeps_only_the_newest_audio(page, server):
    """The replay buffer is bounded: past its limit the oldest samples go, the WAV stays valid."""
    open_page(page, server)
    kept = page.evaluate("""async () => {
        const { Recording } = await import(new URL('/static/js/recording.js', location.href).href);
        const recording = new Recording(16000, 1);  // at most 1 s
        for (let i = 0; i < 6; i += 1) recording.add(new Int16Array(4000).fill(i).buffer);  // 6 x 0.25 s
        const wav = new Int16Array(await recording.toWav().arrayBuffer());
        return { seconds: recording.seconds, total: recording.totalSeconds, trimmed: recording.trimmed,
                 samples: wav.length - 22, first: wav[22], last: wav[wav.length - 1] };
    }""")
    assert kept == {"seconds": 1, "total": 1.5, "trimmed": True, "samples": 16000, "first": 2, "last": 5}


# ---- uploads ----------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_upload_wav_shows_label_bars_timeline_and_player(page, server, speech_wav):
    open_page(page, server)
    page.set_input_files("#upload-file", str(speech_wav))
    assert page.get_attribute("#upload-audio", "src").startswith("blob:")
    with page.expect_response("**/api/predict", timeout=EVENT_TIMEOUT_MS) as answer:
        page.click("#upload-submit")
    label = page.locator('[data-testid="result-label"]')
    label.wait_for(timeout=EVENT_TIMEOUT_MS)
    assert label.text_content().strip() in EMOTIONS
    assert page.locator("#result-bars .bar-row").count() == len(EMOTIONS)
    assert int(page.get_attribute("#result-timeline", "data-count")) >= 1
    assert page.locator("#upload-message").is_hidden()
    assert page.locator("#result-unsure").is_visible() == (answer.value.json().get("uncertain") is True)
    # The result, below the fold of a 900 px window when it arrives, is scrolled into view.
    page.wait_for_function("""() => {
        const r = document.querySelector('#upload-result').getBoundingClientRect();
        return r.top >= 0 && r.top < window.innerHeight / 2;
    }""", timeout=5000)
    assert in_viewport(page, '[data-testid="result-label"]')


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


# ---- Share, "How good is this?", "Use the API" ------------------------------------------------

def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def decode_qr(page, selector: str, tmp_path: Path) -> str | None:
    """The text of the QR code drawn in ``selector`` (zbarimg), or None without zbar-tools."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        return None
    shot = tmp_path / "qr.png"
    page.locator(selector).screenshot(path=str(shot))
    out = subprocess.run([zbarimg, "--quiet", "--raw", str(shot)], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def fake_share(page, answer: dict) -> None:
    page.route("**/api/share", lambda route: route.fulfill(status=200, content_type="application/json",
                                                           body=json.dumps(answer)))


@pytest.mark.browser
def test_share_panel_gives_the_link_to_send(page, server, browser, tmp_path):
    answer = {"urls": ["https://192.0.2.7:5000/", "https://ser-box:5000/", "https://localhost:5000/"],
              "public_url": None, "https": True, "self_signed": True}
    fake_share(page, answer)
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    open_page(page, server)
    page.wait_for_function("() => document.querySelector('#share-url').value === 'https://192.0.2.7:5000/'")
    assert page.locator("#share-cert").is_visible()
    assert "certificate" in page.text_content("#share-cert")
    assert page.locator("#share-local").is_hidden()
    assert page.eval_on_selector_all("#share-list code", "(els) => els.map((e) => e.textContent)") == answer["urls"][1:]
    qr = page.locator("#share-qr")
    assert qr.is_visible() and qr.get_attribute("data-text") == answer["urls"][0]
    decoded = decode_qr(page, "#share-qr", tmp_path)
    assert decoded in (None, answer["urls"][0])

    page.click("#share-copy")
    page.wait_for_selector('#share-status[data-state="copied"]')
    assert page.evaluate("() => navigator.clipboard.readText()") == answer["urls"][0]

    # The snippets accept the self-signed certificate only on an https page: this one is http.
    assert " -k " not in page.text_content("#api-curl")


@pytest.mark.browser
def test_share_panel_prefers_the_public_url_and_copies_without_the_clipboard_api(page, server, tmp_path):
    fake_share(page, {"urls": ["https://demo.example.org/", "http://localhost:5000/"],
                      "public_url": "https://demo.example.org/", "https": False, "self_signed": False})
    # No asynchronous clipboard (as on some browsers): the copy falls back to the selection.
    page.add_init_script("""Object.defineProperty(navigator, 'clipboard', { value: undefined });
        document.addEventListener('copy', () => { window.copied = String(document.getSelection()
          || document.activeElement.value.slice(document.activeElement.selectionStart,
                                                document.activeElement.selectionEnd)); });""")
    open_page(page, server)
    page.wait_for_function("() => document.querySelector('#share-url').value === 'https://demo.example.org/'")
    assert page.locator("#share-cert").is_hidden()
    assert page.locator("#share-local").is_hidden()
    decoded = decode_qr(page, "#share-qr", tmp_path)
    assert decoded in (None, "https://demo.example.org/")
    page.click("#share-copy")
    page.wait_for_selector('#share-status[data-state="copied"]')
    assert page.evaluate("() => window.copied") == "https://demo.example.org/"


@pytest.mark.browser
def test_share_panel_on_the_real_server(page, server):
    share = get_json(server + "/api/share")
    open_page(page, server)
    expected = share["public_url"] or share["urls"][0]
    page.wait_for_function("(url) => document.querySelector('#share-url').value === url", arg=expected)
    # The test server listens on 127.0.0.1 only: its link is of no use to anyone else, and the panel says so.
    assert "localhost" in expected or "127.0.0.1" in expected
    assert "only on this computer" in page.text_content("#share-local")
    assert page.locator("#share-cert").is_hidden()


@pytest.mark.browser
def test_insecure_page_keeps_its_message_beside_the_share_panel(page, server):
    port = server.rsplit(":", 1)[1]
    page.goto(f"http://{INSECURE_HOST}:{port}/")
    # The server's links are loopback ones: the page's own address is the one to send, and it is http.
    page.wait_for_function("(url) => document.querySelector('#share-url').value === url",
                           arg=f"http://{INSECURE_HOST}:{port}/")
    assert "--https" in page.text_content("#share-local")
    assert page.get_attribute("#live-message", "data-code") == "insecure"
    assert page.locator("#live-message").is_visible()


@pytest.mark.browser
def test_quality_panel_shows_the_models_held_out_figures(page, server):
    model = get_json(server + "/api/model")
    open_page(page, server)
    page.wait_for_selector("#quality-figures li")
    items = page.locator("#quality-figures .quality-item")
    assert items.count() == len(model["headline"])
    for i, figure in enumerate(model["headline"]):
        text = items.nth(i).text_content()
        assert figure["what"] in text
        # the page rounds as JavaScript's Math.round does, half up (Python's round() goes to even: 40.5 -> 40)
        ua, chance = (math.floor(figure[k] * 100 + 0.5) for k in ("ua", "chance"))
        assert f"{ua}% UA" in text and f"chance {chance}%" in text
    if not model["headline"]:
        assert "No held-out figures" in page.text_content("#quality-figures")
    assert "hint" in page.text_content(".quality-limits")
    link = page.locator("#model-card-link")
    assert link.is_visible() == bool(model["card"])
    if model["card"]:
        with urllib.request.urlopen(server + link.get_attribute("href"), timeout=10) as response:
            assert response.status == 200 and model["name"] in response.read().decode()


@pytest.mark.browser
def test_quality_panel_with_given_figures(page, server):
    model = {"name": "m", "labels": list(EMOTIONS), "card": None, "error": None,
             "headline": [{"what": "new speakers", "ua": 0.731, "chance": 1 / 7},
                          {"what": "another corpus", "ua": 0.229, "chance": 1 / 7}]}
    page.route("**/api/model", lambda route: route.fulfill(status=200, content_type="application/json",
                                                           body=json.dumps(model)))
    open_page(page, server)
    page.wait_for_selector("#quality-figures .quality-item")
    texts = page.eval_on_selector_all("#quality-figures .quality-item", "(els) => els.map((e) => e.textContent)")
    assert texts == ["new speakers73% UA (chance 14%)", "another corpus23% UA (chance 14%)"]
    widths = page.eval_on_selector_all(".quality-fill", "(els) => els.map((e) => e.style.getPropertyValue('--w'))")
    assert widths == ["73.1%", "22.9%"]
    assert page.locator("#model-card-link").is_hidden()


@pytest.mark.browser
@pytest.mark.slow
def test_api_snippets_run_as_shown(page, server, speech_wav, tmp_path):
    open_page(page, server)
    curl = page.text_content("#api-curl")
    python = page.text_content("#api-python")
    assert f"{server}/api/predict" in curl and f"{server}/api/predict" in python
    assert "/stream" in page.text_content("#api")

    # Run both snippets exactly as shown, with "speech.wav" standing for a real file.
    work = tmp_path
    shutil.copy(speech_wav, work / "speech.wav")
    if shutil.which("curl"):
        out = subprocess.run(shlex.split(curl), cwd=work, capture_output=True, text=True, timeout=120, check=True)
        assert json.loads(out.stdout)["label"] in EMOTIONS
    pytest.importorskip("requests")
    out = subprocess.run([sys.executable, "-c", python], cwd=work, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] in EMOTIONS


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
