"""p2p demo: the drawing page in a real browser, POST /translate for scripts, and a clear 4xx for bad uploads."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from conftest import SMOKE
from p2p_core.cli import main
from p2p_core.errors import ConfigError
from p2p_core.images import decode, read_image, to_pil
from p2p_core.inference import load_generator, translate

pytest.importorskip("flask", reason="p2p demo needs the demo extra: pip install -e '.[demo]'")
requests = pytest.importorskip("requests", reason="the HTTP tests need the test extra: pip install -e '.[test]'")
from p2p_core.demo import server  # noqa: E402  (imports Flask)

SIZE = 64  # the smoke recipe's crop size, so the model's resolution
SEED = 0
# Small limits, so that the uploads that break them stay small too.
LIMITS = server.Limits(max_bytes=300_000, max_pixels=400 * 400)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny U-Net, 64 x 64 and 3 -> 3 channels, trained for two steps of the smoke recipe."""
    root = tmp_path_factory.mktemp("demo")
    main(["fit", "--config", SMOKE, "--trainer.max_steps", "2", "--out_dir", str(root), "--name", "run"])
    return root / "run"


@pytest.fixture(scope="module")
def base_url(run_dir: Path) -> Iterator[str]:
    """The demo served from a thread on a free port, by the functions `p2p demo` serves it with."""
    trained = load_generator(run_dir, mode="paper")
    app = server.create_app(trained=trained, device=torch.device("cpu"), seed=SEED, limits=LIMITS)
    httpd = server.bind(app, host="127.0.0.1", port=0, limits=LIMITS)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server.url(host=httpd.host, port=httpd.port)
    httpd.shutdown()
    thread.join()


def pattern(mode: str, size: tuple[int, int] = (50, 30)) -> Image.Image:
    """A smooth pattern in which every channel varies, in PIL ``mode``; ``size`` is (width, height)."""
    width, height = size
    y, x = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    if mode == "I;16":
        return Image.fromarray(np.round(x * 65535).astype(np.uint16))
    image = Image.fromarray(np.round(np.stack([x, y, (x + y) / 2], axis=-1) * 255).astype(np.uint8))
    if mode in ("LA", "RGBA"):
        converted = image.convert(mode)
        converted.putalpha(128)
        return converted
    return image.convert(mode)


def png(image: Image.Image) -> bytes:
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return encoded.getvalue()


def post(base_url: str, data: bytes, **params: Any) -> requests.Response:
    return requests.post(f"{base_url}translate", files={"image": ("upload.png", data)}, params=params, timeout=60)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def expected(run_dir: Path, data: bytes, *, shorter_side: int | None = None) -> Image.Image:
    """What the demo should answer: p2p_core.inference.translate on its own copy of the model, same seed."""
    trained = load_generator(run_dir, mode="paper")
    torch.manual_seed(SEED)
    with torch.inference_mode():
        return to_pil(translate(trained.module, decode(opened(data), channels=3), shorter_side=shorter_side))


def within_one_level(found: Image.Image, wanted: Image.Image) -> bool:
    # The server thread may run the convolutions with another thread count, which can move a value across a
    # rounding boundary; a wrong translation differs by far more than one 8-bit level.
    difference = TF.pil_to_tensor(found).int() - TF.pil_to_tensor(wanted).int()
    return found.size == wanted.size and int(difference.abs().max()) <= 1


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "I;16"])
def test_translate_answers_a_png_at_the_upload_size_for_any_channels(base_url: str, run_dir: Path, mode: str):
    data = png(pattern(mode))
    response = post(base_url, data)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    assert re.fullmatch(r"translate;dur=[\d.]+", response.headers["Server-Timing"])
    answer = opened(response.content)
    assert (answer.size, answer.mode) == ((50, 30), "RGB")
    assert within_one_level(answer, expected(run_dir, data))


def test_the_same_upload_gives_the_same_output_and_another_upload_another(base_url: str):
    first, again = post(base_url, png(pattern("RGB"))), post(base_url, png(pattern("RGB")))
    other = post(base_url, png(pattern("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    assert first.content == again.content
    assert opened(first.content).size == opened(other.content).size and first.content != other.content


def test_resize_translates_at_that_scale_and_answers_at_the_upload_size(base_url: str, run_dir: Path):
    data = png(pattern("RGB", (100, 60)))
    response = post(base_url, data, resize=32)
    assert response.status_code == 200, response.text
    answer = opened(response.content)
    assert answer.size == (100, 60)
    assert within_one_level(answer, expected(run_dir, data, shorter_side=32))
    assert not within_one_level(answer, opened(post(base_url, data).content))


def test_an_upload_far_from_the_training_scale_comes_back_with_advice(base_url: str):
    large = png(pattern("RGB", (4 * SIZE, 4 * SIZE)))  # four times the 64-pixel crops the model learnt from
    advice = post(base_url, large).headers.get(server.SCALE_WARNING, "")
    assert f"?resize={SIZE}" in advice
    assert server.SCALE_WARNING not in post(base_url, large, resize=SIZE).headers
    assert server.SCALE_WARNING not in post(base_url, png(pattern("RGB", (SIZE, SIZE)))).headers


def test_info_describes_the_model(base_url: str):
    info = requests.get(f"{base_url}info", timeout=30).json()
    assert info["checkpoint"] == "run/step_00000002.pt" and info["step"] == 2
    assert (info["image_size"], info["in_channels"], info["out_channels"]) == (SIZE, 3, 3)
    assert (info["mode"], info["seed"]) == ("paper", SEED)
    assert (info["max_bytes"], info["max_pixels"]) == (LIMITS.max_bytes, LIMITS.max_pixels)


def float_tiff(value: float) -> bytes:
    encoded = io.BytesIO()
    Image.new("F", (8, 8), value).save(encoded, format="TIFF")
    return encoded.getvalue()


def test_a_float_tiff_in_0_1_is_translated_as_predict_reads_it(base_url: str, run_dir: Path, tmp_path: Path):
    data = float_tiff(0.5)
    response = post(base_url, data)
    assert response.status_code == 200, response.text
    (tmp_path / "half.tif").write_bytes(data)
    trained = load_generator(run_dir, mode="paper")
    torch.manual_seed(SEED)
    with torch.inference_mode():
        wanted = to_pil(translate(trained.module, read_image(tmp_path / "half.tif", channels=3)))
    assert within_one_level(opened(response.content), wanted)


def tall(height: int) -> bytes:
    """A 1-pixel-wide PNG: a few KiB however tall, and padded to the generator's multiple in width."""
    return png(Image.new("L", (1, height)))


BAD_UPLOADS = [
    # (name, files, query, status, part of the message)
    ("text", {"image": ("notes.txt", b"a shopping list, not a picture")}, {}, 415, "not a format PIL can read"),
    ("truncated", {"image": ("cut.png", png(pattern("RGB"))[:80])}, {}, 415, "cannot read the upload as an image"),
    ("float pixels", {"image": ("depth.tiff", float_tiff(2.0))}, {}, 415, "floating-point pixels range from 2 to 2"),
    ("empty", {"image": ("empty.png", b"")}, {}, 400, "'empty.png' is empty"),
    ("other field", {"file": ("a.png", png(pattern("RGB")))}, {}, 400, "multipart form field 'image'"),
    ("too many bytes", {"image": ("noise.png", os.urandom(400_000))}, {}, 413, "over the limit of 300,000"),
    ("too many pixels", {"image": ("big.png", png(Image.new("L", (500, 401))))}, {}, 413, "500 x 401 = 200,500 pixels"),
    ("too many pixels to scale down", {"image": ("big.png", png(Image.new("L", (500, 401))))}, {"resize": 32}, 413, "500 x 401 = 200,500 pixels"),
    ("resize too large", {"image": ("a.png", png(pattern("RGB")))}, {"resize": 500}, 413,
     "resize=500 to 833 x 500 and padded to a multiple of 64, the generator would compute 896 x 512 = 458,752 pixels"),
    ("padded too large", {"image": ("tall.png", tall(150_000))}, {}, 413, "would compute 64 x 150016 = 9,601,024 pixels"),
    ("resize not a number", {"image": ("a.png", png(pattern("RGB")))}, {"resize": "half"}, 400, "got 'half'"),
    ("resize not ASCII", {"image": ("a.png", png(pattern("RGB")))}, {"resize": "\u00b2"}, 400, "got '\u00b2'"),
    ("resize huge", {"image": ("a.png", png(pattern("RGB")))}, {"resize": "9" * 5000}, 400, "from 1 to 65536"),
    ("resize zero", {"image": ("a.png", png(pattern("RGB")))}, {"resize": 0}, 400, "from 1 to 65536"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "query", "status", "message"), [case[1:] for case in BAD_UPLOADS], ids=[case[0] for case in BAD_UPLOADS])
def test_a_bad_upload_gets_a_4xx_that_says_what_to_change(base_url: str, files: dict, query: dict, status: int, message: str):
    response = requests.post(f"{base_url}translate", files=files, params=query, timeout=60)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert post(base_url, png(pattern("RGB"))).status_code == 200  # and the server goes on serving


def test_translate_takes_only_posts(base_url: str):
    response = requests.get(f"{base_url}translate", timeout=30)
    assert response.status_code == 405 and response.json()["error"]
    assert "POST" in response.headers["Allow"]


def test_the_page_and_its_files_come_from_the_package_and_name_nothing_outside(base_url: str):
    page = requests.get(base_url, timeout=30)
    assert page.status_code == 200 and '<canvas id="drawing"' in page.text
    for name in ("index.html", "demo.js", "demo.css"):
        assert requests.get(f"{base_url}static/{name}", timeout=30).status_code == 200
        text = (server.STATIC / name).read_text()
        assert not re.search(r"https?:|(src|href)=\"//|url\(|@import", text), name


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "http://127.0.0.1:7860/"), ("0.0.0.0", "http://127.0.0.1:7860/"), ("::", "http://[::1]:7860/"),
     ("::1", "http://[::1]:7860/"), ("localhost", "http://localhost:7860/")],
)  # fmt: skip
def test_the_printed_address_opens_in_a_browser_on_this_machine(host: str, address: str):
    assert server.url(host=host, port=7860) == address


def test_limits_must_be_positive():
    with pytest.raises(ConfigError, match="--max_upload_mb"):
        server.Limits(max_bytes=0, max_pixels=1)
    with pytest.raises(ConfigError, match="--max_pixels"):
        server.Limits(max_bytes=1, max_pixels=0)


def test_a_taken_port_is_an_error_that_names_it_and_the_fix(run_dir: Path):
    app = server.create_app(trained=load_generator(run_dir, mode="eval"), device=torch.device("cpu"), seed=SEED, limits=LIMITS)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*pick another --port"):
            server.bind(app, host="127.0.0.1", port=port, limits=LIMITS)


def half_sent(host: str, port: int) -> socket.socket:
    """A connection that sends a request's headers and the start of its body, then nothing more."""
    connection = socket.create_connection((host, port), timeout=30)
    part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' + png(pattern("RGB"))[:100]
    head = b"POST /translate HTTP/1.1\r\nHost: %s\r\nContent-Type: multipart/form-data; boundary=x\r\n" % host.encode()
    connection.sendall(head + b"Content-Length: 100000\r\n\r\n" + part)
    return connection


def closed_by_server(connection: socket.socket, *, within: float) -> bool:
    """Whether the server ends the connection (with or without a 408 first) within ``within`` seconds."""
    connection.settimeout(within)
    try:
        while connection.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    finally:
        connection.close()


class Gate(torch.nn.Module):
    """A generator held at each call until ``open`` is set: a translation that lasts as long as a test wants."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator, self.size_multiple = generator, generator.size_multiple
        self.entered, self.open = threading.Event(), threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.open.wait(timeout=60)
        return self.generator(x)


@pytest.fixture
def gated_server(run_dir: Path) -> Iterator[tuple[str, server.Server, Gate]]:
    """The demo with a gated generator, room for one upload at a time and a 1 s timeout."""
    limits = attrs.evolve(LIMITS, max_busy=1, timeout_s=1.0)
    trained = load_generator(run_dir, mode="eval")
    gate = Gate(trained.module)
    app = server.create_app(trained=attrs.evolve(trained, module=gate), device=torch.device("cpu"), seed=SEED, limits=limits)
    httpd = server.bind(app, host="127.0.0.1", port=0, limits=limits)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server.url(host=httpd.host, port=httpd.port), httpd, gate
    gate.open.set()
    httpd.shutdown()
    thread.join()


def test_an_upload_beyond_max_busy_gets_a_503_and_a_silent_request_is_dropped(gated_server: tuple[str, server.Server, Gate]):
    base_url, httpd, gate = gated_server
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(post, base_url, png(pattern("RGB")))
        assert gate.entered.wait(timeout=60)  # the first upload holds the only slot
        busy = post(base_url, png(pattern("RGB")))
        assert busy.status_code == 503 and "busy" in busy.json()["error"] and busy.headers["Retry-After"] == "1"
        stalled = half_sent(httpd.host, httpd.port)
        assert closed_by_server(stalled, within=10)  # dropped after 1 s of silence, though every slot is taken
        assert requests.get(f"{base_url}info", timeout=10).status_code == 200
        gate.open.set()
        assert first.result().status_code == 200
    assert post(base_url, png(pattern("RGB"))).status_code == 200  # the slot is free again


def test_idle_connections_cost_no_thread(base_url: str):
    """Connections that send nothing: each used to get a thread of its own (500 sockets, 502 threads)."""
    before = threading.active_count()
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(60)]
    try:
        # Answered after the server accepted every idle connection before it (the listen queue is in order).
        assert requests.get(f"{base_url}info", timeout=30).status_code == 200
        assert threading.active_count() - before < 5
    finally:
        for connection in idle:
            connection.close()


def test_a_request_trickling_in_is_cut_off_at_the_deadline(run_dir: Path):
    """A header byte every 0.2 s: never silent for timeout_s, so only a deadline for the whole request ends it."""
    limits = attrs.evolve(LIMITS, timeout_s=5.0, deadline_s=1.0)
    app = server.create_app(trained=load_generator(run_dir, mode="eval"), device=torch.device("cpu"), seed=SEED, limits=limits)
    httpd = server.bind(app, host="127.0.0.1", port=0, limits=limits)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        connection = socket.create_connection((httpd.host, httpd.port), timeout=30)
        connection.sendall(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        for _ in range(150):  # 30 s of trickling at most
            try:
                connection.sendall(b"X")
            except OSError:  # reset: the server closed the connection
                closed = True
                break
            time.sleep(0.2)
        connection.close()
        assert closed
    finally:
        httpd.shutdown()
        thread.join(timeout=30)


def test_a_foreign_host_is_refused_on_loopback_and_never_copied_into_a_redirect(base_url: str, run_dir: Path):
    rebound = requests.post(f"{base_url}translate", files={"image": ("a.png", png(pattern("RGB")))},
                            headers={"Host": "attacker.example:7860"}, timeout=60)
    assert rebound.status_code == 400 and "attacker.example" in rebound.json()["error"]
    port = base_url.rstrip("/").rsplit(":", 1)[1]
    assert requests.get(f"{base_url}info", headers={"Host": f"localhost:{port}"}, timeout=30).status_code == 200
    # Served on every interface (no Host check), a redirect still names no Host.
    app = server.create_app(trained=load_generator(run_dir, mode="eval"), device=torch.device("cpu"), seed=SEED, limits=LIMITS)
    redirect = app.test_client().get("/", environ_overrides={"PATH_INFO": "/static//index.html"}, headers={"Host": "attacker.example"})
    assert redirect.status_code == 308 and redirect.headers["Location"] == "/static/index.html"


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (Linux's VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)[1]) * 1024


LOAD_GROWTH_LIMIT = 64 * 2**20
"""Peak memory the load test may add to a warmed-up server: measured 1.5 to 4 MiB (before the limits: 1.9 GiB)."""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from Linux's /proc")
def test_under_large_headers_and_half_sent_requests_the_demo_answers_and_stays_small(run_dir: Path):
    command = [sys.executable, "-m", "p2p_core", "demo", "--ckpt", str(run_dir), "--port", "0", "--device", "cpu",
               "--mode", "eval", "--max_pixels", str(512 * 512), "--max_busy", "2", "--timeout_s", "2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline() + process.stdout.readline()
        address = re.search(r"open http://(127\.0\.0\.1):(\d+)/", banner)
        assert address, banner + process.stderr.read()
        base_url = f"http://{address[1]}:{address[2]}/"
        assert post(base_url, png(pattern("RGB", (256, 256)))).status_code == 200
        before = peak_rss(process.pid)
        # Each within the upload limit and a few KiB, but megapixels to decode or to compute once padded.
        large = [(png(Image.new("L", (3000, 3000))), {"resize": 32}), (tall(200_000), {})] * 4
        stalled = [half_sent(address[1], int(address[2])) for _ in range(20)]
        with ThreadPoolExecutor(max_workers=len(large)) as pool:
            answers = list(pool.map(lambda upload: post(base_url, upload[0], **upload[1]), large))
            assert requests.get(f"{base_url}info", timeout=10).status_code == 200  # the page still loads
        statuses = [answer.status_code for answer in answers]
        assert 413 in statuses and set(statuses) <= {413, 503}, [answer.text for answer in answers]
        assert all(closed_by_server(connection, within=15) for connection in stalled)
        assert post(base_url, png(pattern("RGB"))).status_code == 200
        growth = peak_rss(process.pid) - before
        print(f"peak memory growth under load: {growth / 2**20:.1f} MiB")
        assert growth < LOAD_GROWTH_LIMIT
    finally:
        process.send_signal(signal.SIGTERM)  # heard in the background too, unlike SIGINT
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# `python -m p2p_core`, saying at the very end how many objects the interpreter's exit still has to collect.
# A terminal's Ctrl+C raises KeyboardInterrupt; a suite started in the background (a shell without job control)
# hands its processes SIGINT ignored, which would leave Ctrl+C nothing to stop: the probe restores the terminal's.
EXIT_PROBE = (
    "import atexit, gc, runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "atexit.register(lambda: print('left to collect at exit:', len(gc.get_objects()))); "
    "runpy.run_module('p2p_core', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_p2p_demo_serves_on_the_address_it_prints_until_ctrl_c_or_sigterm(run_dir: Path, stop: signal.Signals):
    command = [sys.executable, "-c", EXIT_PROBE, "demo", "--ckpt", str(run_dir), "--port", "0", "--device", "cpu", "--mode", "eval"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline() + process.stdout.readline()
        address = re.search(r"open (http://127\.0\.0\.1:\d+/) in a browser", banner)
        assert address, banner + process.stderr.read()
        assert requests.get(f"{address[1]}info", timeout=30).json()["mode"] == "eval"
        process.send_signal(stop)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "step 2, 64 x 64, eval mode" in banner and "stopped" in out
    # Not the hundreds of thousands of objects torch and the ONNX export leave, whose collection made the exit
    # after Ctrl+C take over a minute on a loaded machine.
    left = int(re.search(r"left to collect at exit: (\d+)", out)[1])
    assert left < 10_000, left


# --- in a real browser -------------------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven through chromedriver, both from Debian's packages (nothing is downloaded)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium: pip install -e '.[test]'")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("the browser test needs Chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    flags = [
        "--headless=new",
        "--window-size=1200,760",
        "--no-sandbox",  # Chromium's sandbox refuses to start as root, which CI is
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        # No update checks, sync or other traffic of the browser's own.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    for flag in flags:
        options.add_argument(flag)
    # Given the driver's path, Selenium runs it instead of looking for (and downloading) one.
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield chrome
    chrome.quit()


def stroke(browser: Any, canvas: Any, points: list[tuple[int, int]]) -> None:
    """Press at the first point, move through the others and release: real pointer events, in screen pixels
    from the canvas' centre."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(browser).move_to_element_with_offset(canvas, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        actions = actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def shown(browser: Any, count: int) -> bytes:
    """The PNG the page shows, once it has shown ``count`` translations."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda page: page.find_element("id", "output").get_attribute("data-shown") == str(count))
    # The bytes the image was loaded from, fetched again from its blob: address; WebDriver waits for the promise.
    return data_url_bytes(browser.execute_script("""
        return (async () => {
            const response = await fetch(document.getElementById("output").src);
            const reader = new FileReader();
            reader.readAsDataURL(await response.blob());
            return await new Promise((resolve) => { reader.onload = () => resolve(reader.result); });
        })();
    """))


def data_url_bytes(url: str) -> bytes:
    return base64.b64decode(url.split(",", 1)[1])


def canvas_png(browser: Any) -> bytes:
    return data_url_bytes(browser.execute_script("return document.getElementById('drawing').toDataURL('image/png')"))


def test_drawing_in_a_real_browser_translates_each_stroke(browser: Any, base_url: str, tmp_path: Path):
    from selenium.webdriver.common.keys import Keys

    browser.get(base_url)
    page = browser.find_element
    canvas = page("id", "drawing")
    assert browser.execute_script("return [arguments[0].width, arguments[0].height]", canvas) == [SIZE, SIZE]
    assert page("id", "output").get_attribute("src") is None

    stroke(browser, canvas, [(-120, -120), (-40, 0), (-100, 120)])
    first = shown(browser, 1)
    assert opened(first).size == (SIZE, SIZE)
    stroke(browser, canvas, [(-150, 60), (150, 60)])
    second = shown(browser, 2)
    assert second != first
    screenshot = tmp_path / "demo.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot of the demo page: {screenshot}")
    # What the page shows is the endpoint's answer for what the canvas holds.
    assert post(base_url, canvas_png(browser)).content == second

    page("id", "undo").click()
    assert shown(browser, 3) == first
    page("id", "clear").click()
    blank = shown(browser, 4)
    assert blank == post(base_url, png(Image.new("RGB", (SIZE, SIZE), "white"))).content
    stroke(browser, canvas, [(-100, -100), (100, 100)])
    assert shown(browser, 5) != blank
    page("id", "eraser").click()
    page("id", "size").send_keys(Keys.END)  # the widest brush covers the pen's line and its soft edges
    stroke(browser, canvas, [(-100, -100), (100, 100)])
    assert shown(browser, 6) == blank

    upload = tmp_path / "upload.png"
    Image.new("RGB", (120, 60), "black").save(upload)
    page("id", "upload").send_keys(str(upload))
    assert shown(browser, 7) != blank
    on_canvas = opened(canvas_png(browser)).convert("L")
    # Fitted to the square: black in the middle rows, white paper above and below.
    assert on_canvas.getpixel((SIZE // 2, SIZE // 2)) == 0 and on_canvas.getpixel((SIZE // 2, 2)) == 255

    assert page("id", "status").text.startswith("Translated in")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map((entry) => entry.name)")
    assert loaded and all(name.startswith((base_url, "blob:", "data:")) for name in loaded), loaded
