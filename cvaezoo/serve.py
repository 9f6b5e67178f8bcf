"""``cvaezoo-serve [MODEL ...]``: a local page over trained models (by default the pretrained ones) and the JSON API it
is a client of. The optional extra ``serve`` (Starlette, uvicorn) runs it; :class:`ModelServer` is the part that
computes, callable without HTTP.

    POST /api/classify  {"image": PNG data URL, "models": [names]?}  every model's p(y|x), abstain decision, score,
                        reconstruction, and the input as each model sees it
    POST /api/generate  {"model", "label", "temperature", "n", "seed"}  n samples for the label, and the standard
                        normal draws ("eps") behind the first one
    POST /api/decode    {"model", "label", "eps": [...]}  the image of z = mean + std * eps under p(z|y) (the sliders)
    POST /api/restyle   {"model", "image"}  the drawing's z decoded with every label (models whose decoder sees y)
    POST /api/complete  {"model", "image" or "test_index", "n"}  completions of the quadrants a quadrant model
                        (CVAE-3 on Sohn et al.'s task) is not given
    GET  /api/models    what each loaded model can do

Every answer is JSON; a bad request is a 4xx with ``{"error": "<one line>"}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from cvaezoo.arguments import ArgumentParser
from cvaezoo.checkpoints import pretrained_models
from cvaezoo.data.base import binarize_fixed
from cvaezoo.errors import UserError, one_line_errors
from cvaezoo.inference import predict_proba
from cvaezoo.robustness import detection_scores
from cvaezoo.tools import rejection_rule
from cvaezoo.trained_run import TrainedRun

PAGE_DIR = Path(__file__).resolve().parent / "page"
#: the largest request body read, in bytes (a PNG of a drawing is a few kB)
MAX_BODY = 1_000_000
#: the largest side of an image a request may send (a drawing is 280 pixels)
MAX_SIDE = 2048
#: the largest count of samples one generate request may ask for
MAX_SAMPLES = 64
#: latent dimensions the page shows a slider for
SLIDERS = 4


class RequestError(Exception):
    """A bad request: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def png_data_url(image: Tensor) -> str:
    """A (C, H, W) image in [0, 1] as a data: URL of a PNG."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def read_image(data_url: Any) -> Image.Image:
    """The picture in a data: URL (PNG or JPEG, base64), or a RequestError."""
    if not isinstance(data_url, str) or "," not in data_url or not data_url.startswith("data:image/"):
        raise RequestError(422, "image must be a data:image/...;base64 URL")
    try:
        picture = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1], validate=True)),
                             formats=["PNG", "JPEG"])
    except (ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise RequestError(422, f"image is not a readable PNG or JPEG ({type(exc).__name__})") from None
    if picture.width > MAX_SIDE or picture.height > MAX_SIDE:  # checked on the header, before decoding
        raise RequestError(413, f"image is {picture.width}x{picture.height}: at most {MAX_SIDE}x{MAX_SIDE}")
    try:
        picture.load()
    except (ValueError, OSError, Image.DecompressionBombError) as exc:
        raise RequestError(422, f"image is not a readable PNG or JPEG ({type(exc).__name__})") from None
    return picture


def centred_digit(picture: Image.Image, size: int = 28, box: int = 20) -> Tensor:
    """A drawing or photo of one digit as MNIST's digits are made: grey, white on black (inverted if the border is
    light), its bounding box scaled to fit ``box`` pixels, then centred by its centre of mass in ``size`` x ``size``.
    (1, size, size) in [0, 1]; a blank image stays blank."""
    rgba = picture.convert("RGBA")
    grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
    alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255
    if alpha.min() < 1:  # a transparent background: put the ink on the paper its colour needs
        opaque = alpha > 0.5
        background = 1.0 if opaque.any() and grey[opaque].mean() < 0.5 else 0.0
        grey = alpha * grey + (1 - alpha) * background
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:
        grey = 1 - grey
    rows, columns = np.nonzero(grey > 0.1)
    if len(rows) == 0:
        return torch.zeros(1, size, size)
    crop = grey[rows.min(): rows.max() + 1, columns.min(): columns.max() + 1]
    scale = box / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((width, height), Image.LANCZOS),
                       dtype=np.float32) / 255
    mass = small.sum()
    centre_row = (small.sum(1) * np.arange(height)).sum() / mass
    centre_column = (small.sum(0) * np.arange(width)).sum() / mass
    top = int(round(size / 2 - centre_row - 0.5))
    left = int(round(size / 2 - centre_column - 0.5))
    top, left = min(max(top, 0), size - height), min(max(left, 0), size - width)
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top: top + height, left: left + width] = small
    return torch.from_numpy(canvas.clip(0, 1))[None]


def integer_in(name: str, value: Any, low: int, high: int, shown: str | None = None) -> int:
    """A request's integer ``value`` in [low, high) (not a bool, not a float), or a RequestError naming it and the
    range (``shown``, default "[low, high)")."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
        raise RequestError(422, f"{name} must be an integer in {shown or f'[{low}, {high})'}, got {value!r}")
    return value


@dataclass
class Served:
    """A loaded model, the rule its abstentions follow (the ``cvaezoo-classify --reject`` logic) and its prior's
    sliders."""

    name: str
    run: TrainedRun
    #: how the run binarises a new image (composed once: Hydra takes a quarter of a second)
    binarize: str = "none"
    reject_score: str | None = None
    threshold: float | None = None
    #: for a model of the missing quadrants (Sohn et al.'s task): how many quadrants of a digit it is given
    given_quadrants: int | None = None

    @property
    def model(self):
        return self.run.model

    @property
    def classifies(self) -> bool:
        return self.model.y_kind == "class" and self.model.classifies

    @property
    def generates(self) -> bool:
        """Draws images from a prior over z (the sliders move that z)."""
        return self.model.target_name == "x" and self.model.has_latent

    @property
    def restyles(self) -> bool:
        """Decodes one z with another label: the decoder sees the class label."""
        return self.generates and self.model.decoder_sees_condition and self.model.y_kind == "class"

    def as_seen(self, grey: Tensor, seed: int) -> Tensor:
        """A centred grey digit (1, H, W) as the model sees it: (1, *x_shape), binarised as it was trained (a
        Bernoulli draw seeded by ``seed`` for a dynamically binarised run)."""
        return binarize_fixed(grey[None].expand(-1, *self.model.x_shape).clone(), self.binarize, seed)


class ModelServer:
    """The loaded models and what the API computes with them."""

    def __init__(self, names: list[str], reject: float = 0.05, seed: int = 0):
        self.seed = seed
        self.models: dict[str, Served] = {}
        for name in names:
            run = TrainedRun.open(name)
            served = Served(name, run, run.binarize())
            if served.classifies:
                torch.manual_seed(seed)
                served.reject_score, served.threshold = rejection_rule(run, None, None, reject, None)
            if run.model.target_name == "y" and run.model.y_kind == "vector" and hasattr(run.data(), "complete"):
                served.given_quadrants = int(run.data().given_quadrants)
            self.models[name] = served
        if not self.models:
            raise UserError("no model to serve: name at least one (cvaezoo-models lists the pretrained ones)")
        self.reject = reject

    # ----- what the page needs to know --------------------------------------------------------
    def describe(self) -> list[dict]:
        rows = []
        for name, served in self.models.items():
            model = served.model
            rows.append({
                "name": name, "display_name": model.display_name, "x_shape": list(model.x_shape),
                "classifies": served.classifies, "generates": served.generates, "restyles": served.restyles,
                "labels": [str(c) for c in (model.class_names or range(model.y_dim))] if model.y_kind == "class" else [],
                "sliders": min(SLIDERS, getattr(model, "latent_dim", 0)) if model.target_name == "x" else 0,
                "completes": served.given_quadrants is not None, "given_quadrants": served.given_quadrants,
                "reject_score": served.reject_score, "threshold": served.threshold,
                "false_rejection": self.reject,
            })
        return rows

    def served(self, name: Any) -> Served:
        if not isinstance(name, str) or name not in self.models:
            raise RequestError(404, f"model {name!r} is not loaded (loaded: {', '.join(self.models)})")
        return self.models[name]

    # ----- the API ---------------------------------------------------------------------------
    @torch.no_grad()
    def classify(self, picture: Image.Image, names: list[str] | None = None) -> dict:
        grey = centred_digit(picture)
        chosen = [self.served(name) for name in (names or list(self.models))]
        answers = []
        for served in chosen:
            model = served.model
            if not served.classifies:
                continue
            seen = served.as_seen(grey, self.seed)
            torch.manual_seed(self.seed)
            probs = predict_proba(model, seen)[0]
            torch.manual_seed(self.seed)
            score = float(detection_scores(model, seen)[served.reject_score][0])
            predicted = int(probs.argmax())
            answer = {"model": served.name, "display_name": model.display_name, "probs": probs.tolist(),
                      "predicted": predicted, "abstain": score < served.threshold, "score": score,
                      "score_name": served.reject_score, "threshold": served.threshold, "input": png_data_url(seen[0])}
            if served.generates:
                c = model.encode_condition(torch.tensor([predicted]))
                answer["reconstruction"] = png_data_url(model.decode(model.posterior(seen, c).mean, c)[0])
            answers.append(answer)
        return {"input": png_data_url(grey), "results": answers}

    def _generator(self, served: Served) -> Served:
        if not served.generates:
            raise RequestError(422, f"{served.name} does not generate images")
        return served

    @torch.no_grad()
    def generate(self, name: Any, label: Any, temperature: Any = 1.0, n: Any = 8, seed: Any = 0) -> dict:
        served = self._generator(self.served(name))
        model = served.model
        y = torch.tensor([integer_in("label", label, 0, model.y_dim)])
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature <= 3:
            raise RequestError(422, f"temperature must be a number in (0, 3], got {temperature!r}")
        n = integer_in("n", n, 1, MAX_SAMPLES + 1, f"[1, {MAX_SAMPLES}]")
        seed = integer_in("seed", seed, 0, 2**63, "[0, 2**63)")
        eps = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)) * temperature
        images = self._decode(served, y, eps)
        return {"images": [png_data_url(image) for image in images], "eps": eps[0, :SLIDERS].tolist(),
                "latent_dim": model.latent_dim}

    @torch.no_grad()
    def decode(self, name: Any, label: Any, eps: Any) -> dict:
        served = self._generator(self.served(name))
        model = served.model
        y = torch.tensor([integer_in("label", label, 0, model.y_dim)])
        if not isinstance(eps, list) or not 1 <= len(eps) <= model.latent_dim or not all(
                isinstance(e, (int, float)) and not isinstance(e, bool) and -10 <= e <= 10 for e in eps):
            raise RequestError(422, f"eps must be a list of 1 to {model.latent_dim} numbers in [-10, 10]")
        full = torch.zeros(1, model.latent_dim)
        full[0, : len(eps)] = torch.tensor(eps, dtype=torch.float32)
        return {"image": png_data_url(self._decode(served, y, full)[0])}

    def _decode(self, served: Served, y: Tensor, eps: Tensor) -> Tensor:
        """The mean of p(x|z, ...) for z = mean + std * eps of the prior given y, one image per row of eps."""
        model = served.model
        x, c = model.generation_inputs(y)
        prior = model.prior(x, c)
        z = prior.mean + prior.std * eps
        return model.decode(z, c.expand(len(eps), -1) if c is not None else None)

    @torch.no_grad()
    def restyle(self, name: Any, picture: Image.Image) -> dict:
        served = self.served(name)
        model = served.model
        if not served.restyles:
            raise RequestError(422, f"{name}'s decoder never sees the label: it cannot restyle")
        seen = served.as_seen(centred_digit(picture), self.seed)
        torch.manual_seed(self.seed)
        predicted = int(predict_proba(model, seen).argmax()) if model.classifies else 0
        z = model.posterior(seen, model.encode_condition(torch.tensor([predicted]))).mean
        labels = torch.arange(model.y_dim)
        images = model.decode(z.expand(model.y_dim, -1), model.encode_condition(labels))
        return {"images": [png_data_url(image) for image in images], "predicted": predicted}

    @torch.no_grad()
    def complete(self, name: Any, picture: Image.Image | None = None, test_index: Any = None, n: Any = 6) -> dict:
        """``n`` completions of the quadrants a quadrant model is not given, of the drawing or of test digit
        ``test_index``: the image it is given, and each completion."""
        served = self.served(name)
        if served.given_quadrants is None:
            raise RequestError(422, f"{name} does not complete quadrants (a CVAE-3 trained with experiment=quadrants does)")
        n = integer_in("n", n, 1, MAX_SAMPLES + 1, f"[1, {MAX_SAMPLES}]")
        data = served.run.data()
        if picture is None:
            test_x = data.split_tensors("test")[0]
            index = integer_in("test_index", test_index, 0, len(test_x))
            given = test_x[index: index + 1]
        else:
            given = data.make_pairs(served.as_seen(centred_digit(picture), self.seed), torch.zeros(1))[0]
        torch.manual_seed(self.seed)
        missing = served.model.sample(given, n)[0]  # (n, missing pixels)
        images = data.complete(given.expand(n, -1, -1, -1), missing)
        return {"given": png_data_url(given[0]), "images": [png_data_url(image) for image in images],
                "given_quadrants": served.given_quadrants}


def build_app(server: ModelServer, worker: ThreadPoolExecutor):
    """The Starlette app: the page's static files and the JSON API over ``server``, whose computations run one at a
    time on ``worker``, off the event loop (the page and GET requests stay responsive)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def body(request: Request) -> dict:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise RequestError(413, f"request body larger than {MAX_BODY} bytes")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise RequestError(413, f"request body larger than {MAX_BODY} bytes")
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, a number of too many digits, too deep
            raise RequestError(400, "request body must be JSON (UTF-8, numbers of at most 4300 digits, not too deeply "
                                    "nested)") from None
        if not isinstance(payload, dict):
            raise RequestError(400, "request body must be a JSON object")
        return payload

    def keys(payload: dict, allowed: set[str], required: set[str]) -> None:
        unknown, missing = sorted(set(payload) - allowed), sorted(required - set(payload))
        if unknown or missing:
            raise RequestError(422, "; ".join([*([f"unknown keys {unknown}"] if unknown else []),
                                               *([f"missing keys {missing}"] if missing else [])]))

    async def compute(function, *args):
        return JSONResponse(await asyncio.get_running_loop().run_in_executor(worker, function, *args))

    async def classify(request: Request) -> JSONResponse:
        payload = await body(request)
        keys(payload, {"image", "models"}, {"image"})
        names = payload.get("models")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
                                  or len(set(names)) != len(names) or len(names) > len(server.models)):
            raise RequestError(422, "models must be a list of distinct names of loaded models")
        return await compute(server.classify, read_image(payload["image"]), names)

    async def generate(request: Request) -> JSONResponse:
        payload = await body(request)
        keys(payload, {"model", "label", "temperature", "n", "seed"}, {"model", "label"})
        return await compute(server.generate, payload["model"], payload["label"], payload.get("temperature", 1.0),
                             payload.get("n", 8), payload.get("seed", 0))

    async def decode(request: Request) -> JSONResponse:
        payload = await body(request)
        keys(payload, {"model", "label", "eps"}, {"model", "label", "eps"})
        return await compute(server.decode, payload["model"], payload["label"], payload["eps"])

    async def restyle(request: Request) -> JSONResponse:
        payload = await body(request)
        keys(payload, {"model", "image"}, {"model", "image"})
        return await compute(server.restyle, payload["model"], read_image(payload["image"]))

    async def complete(request: Request) -> JSONResponse:
        payload = await body(request)
        keys(payload, {"model", "image", "test_index", "n"}, {"model"})
        if ("image" in payload) == ("test_index" in payload):
            raise RequestError(422, "give either image or test_index")
        picture = read_image(payload["image"]) if "image" in payload else None
        return await compute(server.complete, payload["model"], picture, payload.get("test_index"), payload.get("n", 6))

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(server.describe())

    async def page(request: Request) -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html")

    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=422)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 404)
        return JSONResponse({"error": f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}"},
                            status_code=status)

    routes = [Route("/", page), Route("/api/models", models),
              Route("/api/classify", classify, methods=["POST"]), Route("/api/generate", generate, methods=["POST"]),
              Route("/api/decode", decode, methods=["POST"]), Route("/api/restyle", restyle, methods=["POST"]),
              Route("/api/complete", complete, methods=["POST"]),
              Mount("/static", StaticFiles(directory=PAGE_DIR), name="static")]
    handlers = {RequestError: request_error, UserError: user_error, 404: not_found, 405: not_found,
                Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="cvaezoo-serve", description="A local page: draw a digit and see every model's answer, "
                            "pick a label and see samples (needs the serve extra: pip install 'cvaezoo[serve]').")
    parser.add_argument("models", nargs="*", help="models by any name the tools take (default: every pretrained "
                                                  "model but the reference classifier)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--reject", type=float, default=0.05,
                        help="abstain below the score that rejects this share of clean validation images")
    args = parser.parse_args(argv)
    with one_line_errors("cvaezoo-serve"):
        try:
            import uvicorn
        except ImportError:
            raise UserError("cvaezoo-serve needs the serve extra: pip install 'cvaezoo[serve]'") from None
        names = args.models or [name for name in pretrained_models() if not name.endswith("/reference")]
        # every torch call on one thread, the models' loading included: torch's OpenMP workers belong to the thread
        # that calls it, and a second thread's workers make every call about twice as slow on two cores
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvaezoo-serve")
        server = worker.submit(ModelServer, names, args.reject).result()
        listening = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listening.bind((args.host, args.port))
            listening.listen(128)  # connections wait in the backlog until uvicorn accepts them
        except OSError as exc:
            raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        host, port = listening.getsockname()[:2]
        print(f"cvaezoo-serve: {', '.join(server.models)} on http://{host}:{port}/", flush=True)
        uvicorn.Server(uvicorn.Config(build_app(server, worker), log_level="warning")).run(sockets=[listening])
