"""The web page in a real headless Chromium (Debian's ``chromium``, driven by playwright)
against a real daemon on 127.0.0.1, its microphone a fake device playing a WAV file.

The daemon runs in a thread of its own (its own event loop), so a test can stop and
restart it under the page. Tests skip, with one line saying why, where Chromium cannot
be launched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.server import Server, ServerLimits, ServerOptions
from tests.server.conftest import store_of  # noqa: F401 (a fixture)

CHROMIUM = os.environ.get("STREAMER_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(os.environ.get("STREAMER_TEST_ARTIFACTS", "build/test-artifacts"))
SR = 16_000


class ThreadDaemon:
    """A :class:`Server` on 127.0.0.1 in a thread; :meth:`restart` keeps its port."""

    def __init__(self, make_engine, store, token=None, **limits) -> None:
        self.make_engine = make_engine
        self.store = store
        self.token = token
        self.limits = limits
        self.port = 0
        self.server: Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 30.0) -> ThreadDaemon:
        started = threading.Event()
        failed: list[BaseException] = []

        async def main() -> None:
            options = ServerOptions(
                host="127.0.0.1",
                port=self.port,
                token=self.token,
                limits=ServerLimits(**self.limits),
            )
            self._loop = asyncio.get_running_loop()
            try:
                async with Server(self.make_engine(), self.store, options) as server:
                    self.server, self.port = server, server.port
                    started.set()
                    await server.wait()
            except BaseException as exc:
                failed.append(exc)
                started.set()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        assert started.wait(timeout_s), "the daemon did not start"
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self.server.stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the daemon did not stop"
        self._thread = self.server = None

    def restart(self, token: str | None = None) -> None:
        self.stop()
        self.token = token
        for _ in range(50):  # the port was just closed; another may race for it (rarely)
            try:
                self.start()
                return
            except OSError:
                time.sleep(0.1)
        self.start()


@pytest.fixture
def start_daemon(make_engine):
    """``start_daemon(store, token=None, **limits)``: a started :class:`ThreadDaemon`."""
    daemons = []

    def start(store, token=None, **limits) -> ThreadDaemon:
        daemon = ThreadDaemon(make_engine, store, token, **limits).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()


def _chromium_problem() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found; apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed; pip install playwright"
    return None


@pytest.fixture(scope="module")
def playwright_driver():
    """Playwright's driver, for one test file: while it runs, its event loop is this
    thread's, so other files' ``asyncio.run`` could not start."""
    problem = _chromium_problem()
    if problem:
        pytest.skip(problem)
    from playwright.sync_api import Error, sync_playwright

    driver = sync_playwright().start()
    try:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        browser.close()
    except Error as exc:
        driver.stop()
        pytest.skip(f"chromium cannot be launched: {str(exc).splitlines()[0]}")
    yield driver
    driver.stop()


@pytest.fixture
def open_page(playwright_driver, tmp_path):
    """``open_page(url, mic=audio or None, allow_mic=True)``: a page in a fresh Chromium
    whose microphone plays ``mic`` (float32 at 16 kHz) once, from when the page opens it."""
    contexts = []

    def open_(url: str, mic: np.ndarray | None = None, allow_mic: bool = True):
        folder = Path(tmp_path) / f"chromium-{len(contexts)}"
        folder.mkdir()
        flags = [*FLAGS, "--use-fake-device-for-media-stream"]
        if mic is not None:
            wav = folder / "mic.wav"
            sf.write(wav, mic, SR, subtype="PCM_16")
            flags.append(f"--use-file-for-fake-audio-capture={wav.resolve()}%noloop")
        flags.append("--use-fake-ui-for-media-stream" if allow_mic else "--deny-permission-prompts")
        context = playwright_driver.chromium.launch_persistent_context(
            str(folder / "profile"),  # --user-data-dir: a new one per page
            executable_path=CHROMIUM,
            args=flags,
            viewport={"width": 1280, "height": 820},
        )
        contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SR), np.float32)


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.1):
    """Poll ``condition()`` until it returns something true; fail saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)  # polling a browser from outside; nothing to await
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


def save_screenshot(page, name: str) -> Path:
    """A test artifact (``STREAMER_TEST_ARTIFACTS``, default build/test-artifacts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path)
    return path


class Feeder(threading.Thread):
    """Another client: streams ``audio`` (float32, 16 kHz) in real time as ``stream``."""

    def __init__(self, port: int, stream: str, audio: np.ndarray) -> None:
        super().__init__(name=f"feed-{stream}", daemon=True)
        self.url = f"ws://127.0.0.1:{port}/"
        self.stream = stream
        self.data = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        self.stopping = threading.Event()

    def run(self) -> None:
        import json

        from websockets.sync.client import connect

        hello = {"type": "hello", "role": "stream", "stream": self.stream, "sample_rate": SR}
        block = SR // 10
        with connect(self.url) as ws:
            ws.send(json.dumps(hello))
            ws.recv(timeout=10)
            started = time.monotonic()
            for i, start in enumerate(range(0, len(self.data), block)):
                if self.stopping.is_set():
                    return
                ws.send(self.data[start : start + block].tobytes())
                # pacing a live source, not synchronisation
                self.stopping.wait(max(0.0, started + (i + 1) * 0.1 - time.monotonic()))

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
