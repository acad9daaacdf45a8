"""Shared fixtures. Web app: random_weights -> app -> client / stream_client."""
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """A weights folder with a small random-init model (the real one is trained separately)."""
    from ser_model.checkpoint import register, save_checkpoint
    from ser_model.model import ModelConfig, build_model

    folder = tmp_path_factory.mktemp("weights")
    cfg = ModelConfig(channels=(16, 32, 64, 128))
    register(folder, "m", save_checkpoint(folder / "m.pt", build_model(cfg), cfg))
    return folder


@pytest.fixture
def base_config(random_weights):
    """The test app: the random model, one inference lane in this process (no child processes)."""
    return {"TESTING": True, "WEIGHTS": str(random_weights), "INFERENCE_MODE": "thread", "INFERENCE_WORKERS": 1}


@pytest.fixture
def app_config(base_config):
    """Config for ``app``; tests override entries before requesting ``app``."""
    return base_config


@pytest.fixture
def app(app_config):
    from webapp import create_app

    app = create_app(app_config)
    yield app
    app.extensions["ser_stream"].stop_background()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stream_client(app):
    """A Socket.IO test client connected to /stream."""
    from webapp.extensions import socketio

    sc = socketio.test_client(app, namespace="/stream")
    yield sc
    if sc.is_connected("/stream"):
        sc.disconnect(namespace="/stream")


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory):
    """Path of a few seconds of synthetic speech (espeak-ng, 22.05 kHz); skips without espeak-ng."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Hello there. I am really very happy to see you today. "
                    "This is wonderful news for all of us."], check=True, capture_output=True)
    return path
