"""The web side of ``p2p demo``: a drawing page and ``POST /translate``, a Flask application served by waitress.

The page's HTML, JavaScript and CSS ship in ``static/`` inside the package and load nothing from anywhere
else, so the demo works offline and no drawing leaves the machine. Every translation goes through
:func:`p2p_core.inference.translate`, as ``p2p predict``'s do, so an image of any size comes back at its size.

For scripts::

    curl -F image=@outline.png http://127.0.0.1:7860/translate -o photo.png
    curl -F image=@outline.png 'http://127.0.0.1:7860/translate?resize=128' -o photo.png

A request that cannot be served gets a 4xx status and a JSON body ``{"error": "..."}`` saying what to change.

What one request may cost is bounded before any pixel is decoded (see :class:`Limits`): the upload's size
and the size the generator will compute, after ``?resize=`` and the padding to its multiple, are read from
the image's header and checked against ``max_pixels``. The answer has the upload's size, so ``?resize=``
does not let a larger upload in: an image over the limit is refused even when it asks to be scaled down.
At most ``max_busy`` uploads are decoded or translated at once, and the rest get a 503 at once rather than
queueing in memory.

Connections cost no thread: waitress reads requests on one event loop and hands only complete ones to a fixed
pool of ``max_busy + 2`` threads (the page and /info load while uploads are translated); it holds at most
``max_connections`` sockets, and the rest wait in the listen queue. A connection that sends nothing for
``timeout_s`` seconds is closed, and so is one whose request has not fully arrived ``deadline_s`` seconds after it
began, however steadily it trickles in. Bound to a loopback address, the server answers only requests that name it
in their Host (localhost, 127.0.0.1, ::1): a page elsewhere that points its own name at 127.0.0.1 (DNS rebinding)
gets a 400. Redirects carry a relative Location, never the Host a client sent.
"""

from __future__ import annotations

import gc
import io
import ipaddress
import math
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Literal

import attrs
import torch
from flask import Flask, Response, jsonify, request
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
    SecurityError,
    ServiceUnavailable,
    UnsupportedMediaType,
)

from p2p_core.backends import Backend, open_backend
from p2p_core.devices import resolve_device
from p2p_core.errors import ConfigError
from p2p_core.images import DECODE_ERRORS, decode_input, to_pil
from p2p_core.inference import TrainedGenerator, load_generator, scale_note, scaled_size
from p2p_core.registry import Registry
from p2p_core.spec import IMAGE_ENCODING, Mode

STATIC = Path(__file__).parent / "static"
FORMATS = "PNG, JPEG, BMP, WebP or TIFF"
SCALE_WARNING = "X-P2P-Scale-Warning"
"""Response header holding advice when an upload is far from the scale the model trained at."""
MAX_RESIZE = 65536
"""Largest ?resize= read; any value above the square root of max_pixels is refused by the pixel limit anyway."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
"""The Host names a server bound to loopback answers to."""
SPARE_THREADS = 2
"""Threads beyond max_busy, so the page and /info load while every upload slot translates."""


@attrs.frozen(kw_only=True)
class Limits:
    """What requests may ask of the server: each decodes the whole image and runs the model on all of it."""

    max_bytes: int
    max_pixels: int
    """Bounds both the upload's width x height and what the generator computes (after resize and padding)."""
    max_busy: int = 4
    """Uploads decoded or translated at once; more get a 503."""
    timeout_s: float = 30.0
    """Seconds a connection may stay silent (mid-request or idle) before it is closed."""
    deadline_s: float = 120.0
    """Seconds a request may take to arrive in full, however steadily it trickles in."""
    max_connections: int = 100
    """Connections held open at once; more wait in the listen queue until one closes."""

    def __attrs_post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ConfigError(f"the upload limit must be positive, got {self.max_bytes} bytes; raise --max_upload_mb")
        if self.max_pixels < 1:
            raise ConfigError(f"the pixel limit must be positive, got {self.max_pixels}; raise --max_pixels")
        if self.max_busy < 1:
            raise ConfigError(f"the number of uploads served at once must be positive, got {self.max_busy}; raise --max_busy")
        if not 0 < self.timeout_s < math.inf:
            raise ConfigError(f"the request timeout must be positive, got {self.timeout_s} s; raise --timeout_s")
        if not 0 < self.deadline_s < math.inf:
            raise ConfigError(f"the request deadline must be positive, got {self.deadline_s} s; raise --deadline_s")
        if self.max_connections < 1:
            raise ConfigError(f"the number of connections must be positive, got {self.max_connections}; raise --max_connections")


class Translator:
    """The generator behind a lock, drawing the same dropout noise for every request.

    One request runs at a time: in paper mode batch norm updates its running statistics as it runs, and the
    seed is process-wide state, so two requests at once would disturb each other.
    """

    def __init__(
        self, *, trained: TrainedGenerator, device: torch.device, seed: int, backend: Backend = "auto", precision: str = "float32",
        registry: Registry | None = None,
    ) -> None:
        self.trained, self.device, self.seed = trained, device, seed
        self.runner = open_backend(trained, backend=backend, device=device, precision=precision, registry=registry)
        self._lock = threading.Lock()

    def __call__(self, image: Tensor, *, shorter_side: int | None) -> Tensor:
        # fork_rng puts the random state back afterwards, so the server leaves the rest of its process alone.
        devices = [self.device] if self.device.type == "cuda" else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed)
            return self.runner.translate(image.to(self.device), shorter_side=shorter_side)


def create_app(
    *, trained: TrainedGenerator, device: torch.device, seed: int, limits: Limits, backend: Backend = "auto",
    precision: str = "float32", registry: Registry | None = None,
) -> Flask:
    """The Flask application: the page at /, the model's description at /info, and POST /translate."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = limits.max_bytes
    translator = Translator(trained=trained, device=device, seed=seed, backend=backend, precision=precision, registry=registry)
    multiple = trained.module.size_multiple
    busy = threading.BoundedSemaphore(limits.max_busy)

    @app.get("/")
    def page() -> Response:
        return app.send_static_file("index.html")

    @app.get("/info")
    def info() -> Response:
        return jsonify(
            checkpoint=trained.label,
            step=trained.step,
            image_size=trained.image_size,
            in_channels=trained.in_channels,
            input_encoding=trained.input_encoding,
            out_channels=trained.out_channels,
            mode="paper" if trained.module.training else "eval",
            seed=seed,
            max_bytes=limits.max_bytes,
            max_pixels=limits.max_pixels,
        )

    @app.post("/translate")
    def translate_upload() -> Response:
        shorter_side = _shorter_side(request.args.get("resize"))
        # The server has the whole body before the application runs (spooled to disk when large).
        upload = request.files.get("image")
        if upload is None:
            raise BadRequest(
                "send the image as the multipart form field 'image', e.g. curl -F image=@drawing.png URL/translate"
            )
        # Refused rather than queued: waiting uploads would hold their decoded images in memory.
        if not busy.acquire(blocking=False):
            raise ServiceUnavailable(
                f"the server is busy with {limits.max_busy} other uploads; try again in a moment", retry_after=1
            )
        try:
            return translated(upload.read(), name=upload.filename, shorter_side=shorter_side)
        finally:
            busy.release()

    def translated(data: bytes, *, name: str | None, shorter_side: int | None) -> Response:
        if not data:
            raise BadRequest(f"the uploaded file {name!r} is empty")
        image = read_upload(data, channels=trained.in_channels, encoding=trained.input_encoding, shorter_side=shorter_side,
                            multiple=multiple, limits=limits)
        started = time.perf_counter()
        output = translator(image, shorter_side=shorter_side).cpu()  # on a GPU, waits for the result
        elapsed_ms = 1000 * (time.perf_counter() - started)
        encoded = io.BytesIO()
        to_pil(output).save(encoded, format="PNG")
        # Server-Timing lets the page tell the model's time from the network's; a drawing far from the training
        # scale comes back with the same advice predict prints (the page and scripts can show it).
        headers = {"Server-Timing": f"translate;dur={elapsed_ms:.1f}"}
        note = scale_note(*image.shape[-2:], image_size=trained.image_size, shorter_side=shorter_side, name="the upload")
        if note:
            headers[SCALE_WARNING] = note.replace("--resize ", "?resize=")
        return Response(encoded.getvalue(), mimetype="image/png", headers=headers)

    @app.after_request
    def relative_location(response: Response) -> Response:
        # Flask builds redirects from the Host the client sent; a relative Location needs none of it.
        if response.location:
            parts = urllib.parse.urlsplit(response.location)
            response.location = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        message = error.description
        if isinstance(error, SecurityError):
            message = (
                f"this demo answers requests for {', '.join(app.config['TRUSTED_HOSTS'])} only, not for the Host "
                f"{request.headers.get('Host', '')[:100]!r}; open it at the address p2p demo printed"
            )
        # Flask refuses a body over MAX_CONTENT_LENGTH by itself, with a message that names no limit.
        if isinstance(error, RequestEntityTooLarge) and (request.content_length or 0) > limits.max_bytes:
            message = (
                f"the upload is {request.content_length:,} bytes, over the limit of {limits.max_bytes:,}; "
                "send a smaller file, or start p2p demo with a larger --max_upload_mb"
            )
        response = jsonify(error=message)
        response.status_code = error.code or 500
        response.retry_after = getattr(error, "retry_after", None)
        if isinstance(error, MethodNotAllowed):
            response.allow.update(error.valid_methods or ())
        return response

    return app


def _shorter_side(value: str | None) -> int | None:
    if value is None:
        return None
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
    if not re.fullmatch(r"[0-9]{1,6}", value) or not 1 <= int(value) <= MAX_RESIZE:
        raise BadRequest(
            f"resize must be a whole number of pixels from 1 to {MAX_RESIZE} (the shorter side to scale to), "
            f"got {value[:20]!r}"
        )
    return int(value)


def read_upload(
    data: bytes, *, channels: int, shorter_side: int | None, multiple: int, limits: Limits, encoding: str = IMAGE_ENCODING
) -> Tensor:
    """An uploaded file as the model's input (as its ``encoding`` says: an image, or a class-index map); what cannot
    be used raises a 4xx HTTPException saying why."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Checked on the header, before the pixels are decoded.
            _check_pixels(image.width, image.height, shorter_side=shorter_side, multiple=multiple, limits=limits)
            return decode_input(image, encoding=encoding, channels=channels)
    except Image.DecompressionBombError as error:
        raise RequestEntityTooLarge(f"{error}; send a smaller image") from None
    except DECODE_ERRORS as error:
        # PIL's own message for an unknown format names the in-memory file object, which helps nobody.
        reason = "not a format PIL can read" if isinstance(error, UnidentifiedImageError) else str(error)
        raise UnsupportedMediaType(f"cannot read the upload as an image ({reason}); send a {FORMATS} file") from None


def _check_pixels(width: int, height: int, *, shorter_side: int | None, multiple: int, limits: Limits) -> None:
    fix = "send a smaller image, or start p2p demo with a larger --max_pixels"
    if width * height > limits.max_pixels:
        raise RequestEntityTooLarge(
            f"the image is {width} x {height} = {width * height:,} pixels, over the limit of {limits.max_pixels:,} "
            f"(with or without ?resize=: the answer has the upload's size); {fix}"
        )
    how = f"padded to a multiple of {multiple}"
    rows, columns = height, width
    if shorter_side is not None:
        rows, columns = scaled_size(height, width, shorter_side=shorter_side)
        how = f"scaled by ?resize={shorter_side} to {columns} x {rows} and {how}"
    rows, columns = -(-rows // multiple) * multiple, -(-columns // multiple) * multiple
    if rows * columns > limits.max_pixels:
        raise RequestEntityTooLarge(
            f"the image is {width} x {height}; {how}, the generator would compute {columns} x {rows} = "
            f"{rows * columns:,} pixels, over the limit of {limits.max_pixels:,}; {fix}"
            + (" or a smaller ?resize=" if shorter_side is not None else "")
        )


class _TimedParser(HTTPRequestParser):
    """waitress's request parser, noting when the request began to arrive."""

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.started = time.monotonic()


class _Channel(HTTPChannel):
    parser_class = _TimedParser


class Server(TcpWSGIServer):
    """waitress's server, which also closes a connection whose request has not arrived in full within
    ``deadline_s`` (its own timeout measures silence only), and serves until Ctrl+C or :meth:`shutdown`."""

    channel_class = _Channel

    def __init__(self, app: Flask, *, listening: socket.socket, limits: Limits) -> None:
        adjustments = Adjustments(
            threads=limits.max_busy + SPARE_THREADS,
            connection_limit=limits.max_connections,
            channel_timeout=math.ceil(limits.timeout_s),
            cleanup_interval=1,
            # Flask answers an upload over max_bytes with a 413 that says so; this stops a larger one at the door.
            max_request_body_size=2 * limits.max_bytes + 2**16,
            expose_tracebacks=False,
        )
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adjustments.threads)
        super().__init__(app, {}, True, listening, dispatcher=dispatcher, adj=adjustments, bind_socket=False,
                         sockinfo=(listening.family, listening.type, listening.proto, listening.getsockname()))
        self.deadline_s = limits.deadline_s
        self.stopping = threading.Event()

    @property
    def host(self) -> str:
        return self.effective_host

    @property
    def port(self) -> int:
        return self.effective_port

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            arriving = channel.request
            if arriving is not None and time.monotonic() - arriving.started > self.deadline_s:
                channel.will_close = True

    def serve_forever(self) -> None:
        """Serve until Ctrl+C (KeyboardInterrupt) or :meth:`shutdown`; then close every connection."""
        try:
            while not self.stopping.is_set():
                wasyncore.loop(timeout=0.5, map=self._map, count=1)
        except KeyboardInterrupt:
            pass
        finally:
            self.task_dispatcher.shutdown(timeout=1)
            wasyncore.close_all(self._map)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever`, from another thread."""
        self.stopping.set()


def bind(app: Flask, *, host: str, port: int, limits: Limits) -> Server:
    """A server for ``app`` listening on host:port (0: a free port), within ``limits``, not yet serving.

    Bound to a loopback address, it answers only requests whose Host names loopback.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port (0 picks a free one) "
            "or another --host"
        ) from None
    if _is_loopback(host):
        app.config["TRUSTED_HOSTS"] = list(LOOPBACK_NAMES)
    return Server(app, listening=listening, limits=limits)


def url(*, host: str, port: int) -> str:
    """The address to open the page of a server on host:port at; for one on every interface, its loopback one."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}/"


def serve(
    *,
    ckpt: Path,
    host: str,
    port: int,
    device: Literal["auto", "cpu", "cuda"],
    mode: Mode,
    seed: int,
    limits: Limits,
    backend: Backend = "auto",
    precision: str = "float32",
    direction: str = "AtoB",
    ema: bool = True,
    registry: Registry | None = None,
) -> None:
    """Load the generator that translates ``direction`` and serve it until Ctrl+C or SIGTERM; the process is then
    expected to exit."""
    where = resolve_device(device)
    trained = load_generator(ckpt, mode=mode, device=where, registry=registry, direction=direction, ema=ema)
    app = create_app(trained=trained, device=where, seed=seed, limits=limits, backend=backend, precision=precision, registry=registry)
    server = bind(app, host=host, port=port, limits=limits)
    size = trained.image_size
    print(
        f"p2p demo: {trained.origin} (step {trained.step}, {size} x {size}, {mode} mode) on {where}\n"
        f"open {url(host=server.host, port=server.port)} in a browser; Ctrl+C stops the server",
        flush=True,
    )
    if not _is_loopback(host):
        print(f"p2p demo: warning: serving on {host}, so anyone who can reach it can use the model", file=sys.stderr)
    # Ctrl+C cannot reach a demo started in the background (a shell without job control starts it with SIGINT
    # ignored, and Python keeps it so); `kill`, docker and systemd send SIGTERM, which stops it as cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
    server.serve_forever()  # returns on Ctrl+C or SIGTERM, having closed the socket
    print("p2p demo: stopped", flush=True)
    # The interpreter's exit would garbage-collect every object still tracked: after an ONNX export built in this
    # process (torch.onnx, onnxscript, sympy and their modules) about half a million, several seconds of one core
    # between Ctrl+C and the exit, many times that on a loaded machine. Frozen, they go with the process.
    gc.freeze()


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
