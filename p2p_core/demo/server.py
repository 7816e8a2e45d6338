"""The web side of ``p2p demo``: a drawing page and ``POST /translate``, served by Flask.

The page's HTML, JavaScript and CSS ship in ``static/`` inside the package and load nothing from anywhere
else, so the demo works offline and no drawing leaves the machine. Every translation goes through
:func:`p2p_core.inference.translate`, as ``p2p predict``'s do, so an image of any size comes back at its size.

For scripts::

    curl -F image=@outline.png http://127.0.0.1:7860/translate -o photo.png
    curl -F image=@outline.png 'http://127.0.0.1:7860/translate?resize=128' -o photo.png

A request that cannot be served gets a 4xx status and a JSON body ``{"error": "..."}`` saying what to change.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import attrs
import torch
from flask import Flask, Response, jsonify, request
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.serving import BaseWSGIServer, make_server

from p2p_core import checkpoint
from p2p_core.devices import resolve_device
from p2p_core.errors import ConfigError
from p2p_core.images import DECODE_ERRORS, decode, to_pil
from p2p_core.inference import TrainedGenerator, load_generator, translate
from p2p_core.registry import Registry
from p2p_core.spec import Mode

STATIC = Path(__file__).parent / "static"
FORMATS = "PNG, JPEG, BMP, WebP or TIFF"


@attrs.frozen(kw_only=True)
class Limits:
    """What one request may ask of the server: it decodes the whole image and runs the model on all of it."""

    max_bytes: int
    max_pixels: int

    def __attrs_post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ConfigError(f"the upload limit must be positive, got {self.max_bytes} bytes; raise --max_upload_mb")
        if self.max_pixels < 1:
            raise ConfigError(f"the pixel limit must be positive, got {self.max_pixels}; raise --max_pixels")


class Translator:
    """The generator behind a lock, drawing the same dropout noise for every request.

    One request runs at a time: in paper mode batch norm updates its running statistics as it runs, and the
    seed is process-wide state, so two requests at once would disturb each other.
    """

    def __init__(self, *, trained: TrainedGenerator, device: torch.device, seed: int) -> None:
        self.trained, self.device, self.seed = trained, device, seed
        self._lock = threading.Lock()

    def __call__(self, image: Tensor, *, shorter_side: int | None) -> Tensor:
        # fork_rng puts the random state back afterwards, so the server leaves the rest of its process alone.
        devices = [self.device] if self.device.type == "cuda" else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed)
            return translate(self.trained.module, image.to(self.device), shorter_side=shorter_side)


def create_app(*, trained: TrainedGenerator, device: torch.device, seed: int, limits: Limits) -> Flask:
    """The Flask application: the page at /, the model's description at /info, and POST /translate."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = limits.max_bytes
    translator = Translator(trained=trained, device=device, seed=seed)

    @app.get("/")
    def page() -> Response:
        return app.send_static_file("index.html")

    @app.get("/info")
    def info() -> Response:
        return jsonify(
            checkpoint=_label(trained.path),
            step=trained.step,
            image_size=trained.image_size,
            in_channels=trained.in_channels,
            out_channels=trained.out_channels,
            mode="paper" if trained.module.training else "eval",
            seed=seed,
            max_bytes=limits.max_bytes,
            max_pixels=limits.max_pixels,
        )

    @app.post("/translate")
    def translate_upload() -> Response:
        upload = request.files.get("image")
        if upload is None:
            raise BadRequest(
                "send the image as the multipart form field 'image', e.g. curl -F image=@drawing.png URL/translate"
            )
        data = upload.read()
        if not data:
            raise BadRequest(f"the uploaded file {upload.filename!r} is empty")
        shorter_side = _shorter_side(request.args.get("resize"))
        image = read_upload(data, channels=trained.in_channels, shorter_side=shorter_side, limits=limits)
        started = time.perf_counter()
        output = translator(image, shorter_side=shorter_side).cpu()  # on a GPU, waits for the result
        elapsed_ms = 1000 * (time.perf_counter() - started)
        encoded = io.BytesIO()
        to_pil(output).save(encoded, format="PNG")
        # Server-Timing lets the page tell the model's time from the network's.
        return Response(encoded.getvalue(), mimetype="image/png", headers={"Server-Timing": f"translate;dur={elapsed_ms:.1f}"})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        message = error.description
        # Flask refuses a body over MAX_CONTENT_LENGTH by itself, with a message that names no limit.
        if isinstance(error, RequestEntityTooLarge) and (request.content_length or 0) > limits.max_bytes:
            message = (
                f"the upload is {request.content_length:,} bytes, over the limit of {limits.max_bytes:,}; "
                "send a smaller file, or start p2p demo with a larger --max_upload_mb"
            )
        response = jsonify(error=message)
        response.status_code = error.code or 500
        if isinstance(error, MethodNotAllowed):
            response.allow.update(error.valid_methods or ())
        return response

    return app


def _label(path: Path) -> str:
    """A checkpoint as RUN/step_N.pt when it sits in a run folder, else its file name."""
    return f"{path.parent.parent.name}/{path.name}" if path.parent.name == checkpoint.FOLDER else path.name


def _shorter_side(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise BadRequest(f"resize must be a whole number of pixels, at least 1 (the shorter side to scale to), got {value!r}")
    return int(value)


def read_upload(data: bytes, *, channels: int, shorter_side: int | None, limits: Limits) -> Tensor:
    """An uploaded file as the model's input; what cannot be used raises a 4xx HTTPException saying why."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Checked on the header, before the pixels are decoded.
            _check_pixels(image.width, image.height, shorter_side=shorter_side, limits=limits)
            if image.mode == "F":
                raise UnsupportedMediaType(
                    "the image has 32-bit floating-point pixels, which have no fixed range to map to the model's "
                    "[-1, 1]; save it with 8 or 16 bits per channel"
                )
            return decode(image, channels=channels)
    except Image.DecompressionBombError as error:
        raise RequestEntityTooLarge(f"{error}; send a smaller image") from None
    except DECODE_ERRORS as error:
        # PIL's own message for an unknown format names the in-memory file object, which helps nobody.
        reason = "not a format PIL can read" if isinstance(error, UnidentifiedImageError) else str(error)
        raise UnsupportedMediaType(f"cannot read the upload as an image ({reason}); send a {FORMATS} file") from None


def _check_pixels(width: int, height: int, *, shorter_side: int | None, limits: Limits) -> None:
    if shorter_side is not None:
        scale = shorter_side / min(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if width * height > limits.max_pixels:
        scaled = " after resize" if shorter_side is not None else ""
        raise RequestEntityTooLarge(
            f"the image is {width} x {height} = {width * height:,} pixels{scaled}, over the limit of "
            f"{limits.max_pixels:,}; send a smaller image, or start p2p demo with a larger --max_pixels"
        )


def bind(app: Flask, *, host: str, port: int) -> BaseWSGIServer:
    """A threaded server for ``app`` listening on host:port (0: a free port), not yet serving.

    Threaded, so the page and its files load while a translation runs.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Bound here rather than by werkzeug, which exits the process when the port is taken.
        listening = socket.create_server((host, port), family=family)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port (0 picks a free one) "
            "or another --host"
        ) from None
    with listening:  # werkzeug serves a duplicate of the descriptor
        return make_server(host, port, app, threaded=True, fd=listening.fileno())


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
    registry: Registry | None = None,
) -> None:
    """Load the generator and serve it until Ctrl+C."""
    where = resolve_device(device)
    trained = load_generator(ckpt, mode=mode, device=where, registry=registry)
    server = bind(create_app(trained=trained, device=where, seed=seed, limits=limits), host=host, port=port)
    size = trained.image_size
    print(
        f"p2p demo: {trained.path} (step {trained.step}, {size} x {size}, {mode} mode) on {where}\n"
        f"open {url(host=server.host, port=server.port)} in a browser; Ctrl+C stops the server",
        flush=True,
    )
    if not _is_loopback(host):
        print(f"p2p demo: warning: serving on {host}, so anyone who can reach it can use the model", file=sys.stderr)
    server.serve_forever()  # returns on Ctrl+C, having closed the socket
    print("p2p demo: stopped", flush=True)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
