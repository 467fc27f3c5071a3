"""`serve.py --run A --run B [--host 127.0.0.1] [--port 8000]`: the classifier over HTTP.

    POST /predict        multipart `image` (file) + optional `text` -> one result
    POST /predict/batch  multipart `image` repeated + optional `text` repeated (aligned; an
                         empty one means "read it by OCR") -> {"results": [...]}
    GET  /health         model loaded, device, runs, queue length, whether images are needed
    GET  /               a page: drop a meme, edit the OCR'd caption, see the labels
    GET  /openapi.json   the request and response schemas
    GET  /docs, /redoc   the same as Swagger UI's and ReDoc's pages, their scripts served by
                         the service (fastapi-offline), so they work offline

Where no loaded run reads pictures (all trained with --image-encoder none) the image is
optional: `text` alone is scored as MemeClassifier.predict(texts=[...]) scores it, and the image
serves only to read a missing caption by OCR. A meme sent with both is scored by its caption
and its image is not read at all: not decoded, nor checked as a picture, so an empty,
unreadable or too many-pixelled one is no error (the runs would not look at it, and one such
file would fail a whole batch); its bytes still count against --max-upload-mb (413). A batch
may mix memes sent with an image alone (OCR), a caption alone, or both: `image` and `text` are
aligned, a blank file input (what a browser's form sends for one left empty: no file name, no
bytes) holding the place of a meme without an image; or, with no blank, the images go in order
to the memes whose `text` is empty, the ones that need one (curl -F text= -F text="a caption"
-F image=@meme.png).

A result is `api.Prediction` plus the model it came from: {"text", "ocr", "pred_hate",
"pred_pc", "pred_attack", "labels": {"hate", "pc", "attack"}, "model": {"runs", ...}}.

Concurrency: one model worker. The classifier (and its OCR engine) is not thread-safe and
the device is one, so a single thread owns it. Requests are parsed and their images decoded
and checked in FastAPI's thread pool, then queued (bounded: a full queue answers 503 at once
instead of piling up latency); the worker takes whatever is waiting, up to --max-batch memes,
and scores it as one batch, so concurrent requests share a forward pass.

Bad requests get a 4xx with a reason ({"detail": ...}) and leave the service up: no file
where a run reads pictures, neither file nor caption where none does, or an empty file (400),
a text field where the file belongs or a file for the caption (400), a file that is not an
image (400), an upload over --max-upload-mb (413, from Content-Length before the body is read,
as the bytes arrive for a body sent without one, and again per file), a picture over
--max-pixels (413: a decompression bomb is refused from its header, before its pixels are
decoded), a caption over --max-caption-chars (400), no caption where the service runs without
OCR (400), a batch over --max-batch memes (413). For text-only runs an image sent beside its
caption is held to --max-upload-mb alone.
"""
from __future__ import annotations

import argparse
import math
import queue
import socket
import sys
import threading
import warnings
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Optional

from fastapi import Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.datastructures import UploadFile as StarletteUpload

from ..features.cache import ImageReadError
from ..runtime.commands import ends_quietly
from .api import ImageTooLargeError, MemeClassifier, open_image
from .ocr import ENGINES
from .page import render_page

DEFAULT_MAX_UPLOAD_MB = 10
DEFAULT_MAX_CAPTION_CHARS = 1000
DEFAULT_MAX_PIXELS = 50_000_000  # under PIL's own bomb limit (89M): 150 MB decoded as RGB
DEFAULT_MAX_BATCH = 16
DEFAULT_QUEUE = 64
RESULT_TIMEOUT_S = 300


class Labels(BaseModel):
    """The decision (decision.decide_all): an empty label never stands beside a real one, and
    `hate` is "hateful" when `pc` or `attack` holds a real label."""
    hate: str
    pc: Optional[list[str]] = None
    attack: Optional[list[str]] = None


class ModelInfo(BaseModel):
    runs: list[str]
    tasks: list[str]
    device: str
    ocr: str


class PredictResponse(BaseModel):
    """pred_*: scores with each label's threshold folded onto 0.5 (as a submission holds them);
    None for a task the loaded runs do not predict."""
    text: str = Field(description="the caption scored")
    ocr: bool = Field(description="true: the caption was read by OCR off the image; false: it "
                      "was given in the request")
    pred_hate: dict[str, float]
    pred_pc: Optional[dict[str, float]] = None
    pred_attack: Optional[dict[str, float]] = None
    labels: Labels
    model: ModelInfo


class BatchResponse(BaseModel):
    results: list[PredictResponse]


class ErrorResponse(BaseModel):
    """Every refusal (4xx, 5xx): what was wrong, naming the field or image."""
    detail: str


# What the predict endpoints refuse, and how: listed in the schema (FastAPI lists its own 422
# instead, which this service never sends: RequestValidationError is answered with a 400).
ERRORS = {400: {"model": ErrorResponse, "description": "no image where the runs read pictures, "
                "or no caption where they do not and none is given; empty or unreadable "
                "image (for text-only runs, only one OCR is to read); a text field where the "
                "file belongs; caption too long; images and captions misaligned"},
          413: {"model": ErrorResponse, "description": "upload, picture or batch over the limit"},
          503: {"model": ErrorResponse, "description": "queue full: try again shortly"}}


class Health(BaseModel):
    status: str
    model_loaded: bool
    device: str
    runs: list[str]
    tasks: list[str]
    ocr: str
    needs_images: bool  # False: the runs are text-only, a caption alone is scored
    queued: int
    memes_scored: int
    batches: int  # forward passes that scored them: fewer than requests when batched


class Busy(Exception):
    """The worker's queue is full."""


@dataclass
class _Job:
    images: list
    texts: list
    future: Future = field(default_factory=Future)


class ModelWorker:
    """The one thread that runs the classifier: queued jobs are scored in batches."""

    def __init__(self, clf: MemeClassifier, max_batch: int = DEFAULT_MAX_BATCH,
                 max_queue: int = DEFAULT_QUEUE):
        self.clf = clf
        self.max_batch = max_batch
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batches = self.memes = 0  # forward passes run and memes scored (/health)
        self._thread = threading.Thread(target=self._loop, name="model-worker", daemon=True)
        self._thread.start()

    def submit(self, images: list, texts: list) -> Future:
        job = _Job(images, texts)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Busy() from None
        return job.future

    def close(self) -> None:
        self.jobs.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            jobs, n = [job], len(job.images)
            stop = False
            while n < self.max_batch:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
                n += len(more.images)
            self._run(jobs)
            if stop:
                return

    def _predict(self, images: list, texts: list) -> list:
        # Captions sent alone (text-only runs) beside memes sent with their image: predict
        # takes a list of images or none, so each kind is scored in its own pass.
        bare = [i for i, image in enumerate(images) if image is None]
        if not bare:
            results = self.clf.predict(images=images, texts=texts)
            self.batches += 1
            return results
        out = [None] * len(images)
        pictured = [i for i, image in enumerate(images) if image is not None]
        for group, pictures in ((bare, None), (pictured, [images[i] for i in pictured])):
            if group:
                results = self.clf.predict(images=pictures, texts=[texts[i] for i in group])
                self.batches += 1
                for i, result in zip(group, results):
                    out[i] = result
        return out

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = self._predict([im for j in jobs for im in j.images],
                                    [t for j in jobs for t in j.texts])
            self.memes += len(results)
        except Exception as e:  # noqa: BLE001 - one bad job must not fail the ones beside it
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job])
            else:
                jobs[0].future.set_exception(e)
            return
        start = 0
        for job in jobs:
            job.future.set_result(results[start:start + len(job.images)])
            start += len(job.images)


def _blank_file(field) -> bool:
    """A browser form's file input left empty: no file name and no bytes (FastAPI's test).
    The parsed form holds Starlette's UploadFile, of which FastAPI's is a subclass."""
    return isinstance(field, StarletteUpload) and field.filename == "" and field.size == 0


def body_too_large(limit: int, max_upload_mb: float, length: int | None = None) -> str:
    # One message for a body whose size was declared and one cut while it arrived, whose whole
    # size is never learnt: reading it stops at the limit.
    size = f" of {length} bytes" if length is not None else ""
    return (f"request body{size} is over the limit of {limit} bytes ({max_upload_mb:g} MB an "
            "image)")


class BodyLimit:
    """413 for a request body over its route's limit (`limits`, by path), from Content-Length
    before any of it is read; a body sent without one (chunked) is counted as its bytes arrive
    and cut at the limit, as the multipart parser would otherwise spool all of it to disk
    before decode's per-file check saw it. Not FastAPI's route max_body_size, which cuts as
    well but answers a chunked body with a bare "Content Too Large" that names no limit."""

    def __init__(self, app, limits: dict[str, int], max_upload_mb: float):
        self.app, self.limits, self.max_upload_mb = app, limits, max_upload_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits["/predict/batch" if scope["path"].endswith("/batch")
                            else "/predict"]
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            detail = body_too_large(limit, self.max_upload_mb, int(length))
            return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
        read = 0

        async def counted():
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    # FastAPI passes an HTTPException from reading the body on as it is, to
                    # the app's handler: the same {"detail": ...} as every other 4xx here.
                    raise HTTPException(413, body_too_large(limit, self.max_upload_mb))
            return message

        await self.app(scope, counted, send)


def create_app(clf: MemeClassifier, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_caption_chars: int = DEFAULT_MAX_CAPTION_CHARS,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_batch: int = DEFAULT_MAX_BATCH,
               max_queue: int = DEFAULT_QUEUE):
    """The FastAPI app around `clf` (one ModelWorker; stopped at the app's shutdown)."""
    max_bytes = int(max_upload_mb * 1024 * 1024)

    worker = ModelWorker(clf, max_batch, max_queue)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    # FastAPIOffline is FastAPI whose /docs and /redoc pages load their scripts from this
    # service, not from a CDN: trust-and-safety machines are often offline.
    app = FastAPIOffline(title="Hateful memes classifier", lifespan=lifespan,
                         description="Fine-grained hateful meme labels (WOAH 2021 shared task) "
                         "for an image and its caption; the caption is read by OCR when not "
                         "given. Where no loaded run reads pictures (GET /health: "
                         "needs_images false) a caption alone is scored.")
    app.state.worker = worker

    # A whole request: its images and the multipart overhead.
    body_limit = {"/predict": max_bytes + 2 ** 16,
                  "/predict/batch": max_bytes * max_batch + 2 ** 16}

    app.add_middleware(BodyLimit, limits=body_limit, max_upload_mb=max_upload_mb)

    @app.exception_handler(RequestValidationError)
    async def wrong_field_kind(request: Request, exc: RequestValidationError):
        # A text field where a file belongs (curl -F image=meme.png, without the @) or the
        # reverse fails FastAPI's validation before the endpoint runs; its own answer is a 422
        # whose detail echoes the parsed input, an upload's internals included.
        reasons = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"][1:]]
            where = " ".join(loc) or "request"
            if loc[:1] == ["image"]:
                reasons.append(f"{where}: a text field, not a file: send the meme as a file "
                               "in the multipart field 'image' (curl -F image=@meme.png)")
            elif loc[:1] == ["text"]:
                reasons.append(f"{where}: a file, not a text field: send the caption as text "
                               "(curl -F text=\"its caption\")")
            else:
                reasons.append(f"{where}: {error['msg']}")
        return JSONResponse({"detail": "; ".join(reasons)}, status_code=400)

    needs_images = clf.needs_images

    def no_file(plural: bool = False, i: int | None = None) -> HTTPException:
        # Runs that read pictures cannot score a caption alone; text-only ones can, so what
        # is missing there is the caption (or an image for OCR to read it from).
        memes = "the memes as repeated multipart fields 'image'" if plural else (
            "the meme as the multipart field 'image'")
        runs = ", ".join(clf.info()["runs"])
        if needs_images:
            where = f"image {i}: " if i is not None else ""
            return HTTPException(400, f"{where}no file: send {memes} (runs {runs} read "
                                 "pictures)")
        ocr = "" if clf.ocr_spec == "none" else f", or {memes} to read it by OCR"
        return HTTPException(400, "no caption and no file: send the caption as 'text' (runs "
                             f"{runs} read no pictures){ocr}")

    def upload_name(upload, i: int | None) -> str:
        return f"{'image' if i is None else f'image {i}'} ({upload.filename or 'unnamed'})"

    def decode(upload, i: int | None = None):
        if upload is None or isinstance(upload, str):
            raise no_file(i is not None, i)
        name = upload_name(upload, i)
        data = upload.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"{name}: over the upload limit of {max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, f"{name}: empty file")
        try:
            return open_image(data, max_pixels=max_pixels, name=name)
        except ImageTooLargeError as e:
            raise HTTPException(413, str(e)) from None
        except ImageReadError as e:
            raise HTTPException(400, str(e)) from None

    def caption(text: str | None, i: int | None = None, image: bool = True) -> str | None:
        if text is None or text.strip() == "":
            where = f"text {i}" if i is not None else "text"
            if not image:
                raise HTTPException(400, f"{where}: no caption, and no image to read it from "
                                    "by OCR: send the caption as 'text'")
            if clf.ocr_spec == "none":
                raise HTTPException(400, f"{where}: no caption, and this service runs without "
                                    "OCR (--ocr none): send the caption as 'text'")
            return None  # read by OCR
        if len(text) > max_caption_chars:
            where = f"text {i}" if i is not None else "text"
            raise HTTPException(400, f"{where}: caption of {len(text)} characters is over the "
                                f"limit of {max_caption_chars}")
        return text

    def meme(upload, text: str | None, i: int | None = None) -> tuple:
        """(picture, caption) to score, the caption None for OCR to read it. Text-only runs
        score a meme sent with its caption without its picture (None): the image is held to
        the upload limit but not decoded (see the module's docstring)."""
        if needs_images:
            return decode(upload, i), caption(text, i)
        given = caption(text, i, image=upload is not None)
        if given is None:
            return decode(upload, i), None
        if upload is not None:
            size = upload.size if upload.size is not None else len(
                upload.file.read(max_bytes + 1))
            if size > max_bytes:
                raise HTTPException(413, f"{upload_name(upload, i)}: over the upload limit of "
                                    f"{max_upload_mb:g} MB")
        return None, given

    def score(images: list, texts: list) -> list[dict]:
        try:
            future = worker.submit(images, texts)
        except Busy:
            raise HTTPException(503, "busy: the model's queue is full, retry shortly") from None
        try:
            results = future.result(timeout=RESULT_TIMEOUT_S)
        except TimeoutError:
            raise HTTPException(504, "the model took too long") from None
        except Exception as e:  # noqa: BLE001 - reported, and the service stays up
            raise HTTPException(500, f"prediction failed: {type(e).__name__}: {e}") from None
        model = clf.info()
        return [{**r.to_dict(), "model": model} for r in results]

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS)
    def predict(image: Optional[UploadFile] = File(None, description="the meme picture; "
                                                   "optional where no run reads pictures "
                                                   "(GET /health: needs_images)"),
                text: Optional[str] = Form(None, description="its caption; empty or absent: "
                                           "read by OCR")):
        if image is None and not needs_images and (text is None or text.strip() == ""):
            raise no_file()
        picture, given = meme(image, text)
        return score([picture], [given])[0]

    async def image_fields(request: Request) -> list:
        # FastAPI leaves a browser form's blank file inputs out of `image`, and with them the
        # alignment with `text`; the form it parsed (Starlette keeps it) still has them.
        return (await request.form()).getlist("image")

    @app.post("/predict/batch", response_model=BatchResponse, responses=ERRORS)
    def predict_batch(image: Optional[list[UploadFile]] = File(None, description="memes, "
                                                               "aligned with the captions; "
                                                               "where no run reads pictures, "
                                                               "a blank file input for none, "
                                                               "or only the images of the "
                                                               "memes with an empty caption"),
                      text: Optional[list[str]] = Form(None, description="captions aligned "
                                                       "with the images; empty: OCR"),
                      fields: list = Depends(image_fields)):
        images, texts = list(image or []), list(text or [])
        blank = {i for i, f in enumerate(fields) if _blank_file(f)}
        # Without captions too: a blank left out would silently score fewer memes than sent.
        blanks = bool(blank) and len(fields) == len(images) + len(blank)
        if blanks:
            sent = iter(images)
            images = [None if i in blank else next(sent) for i in range(len(fields))]
        if not images and (needs_images or not texts):
            raise no_file(True)
        if max(len(images), len(texts)) > max_batch:
            raise HTTPException(413, f"{max(len(images), len(texts))} memes in one request; "
                                f"the limit is {max_batch}")
        if texts and len(images) != len(texts):
            # Text-only runs: captions alone, or the images of the memes sent without one.
            uncaptioned = {i for i, t in enumerate(texts) if t is None or t.strip() == ""}
            if needs_images or blanks or len(images) not in (0, len(uncaptioned)):
                also = "" if needs_images else ", or one per empty text"
                raise HTTPException(400, f"{len(images)} images but {len(texts)} texts: give "
                                    f"none or one per image (empty for OCR){also}")
            sent = iter(images)
            images = [next(sent, None) if i in uncaptioned else None for i in range(len(texts))]
        texts = texts or [None] * len(images)
        memes = [meme(upload, t, i) for i, (upload, t) in enumerate(zip(images, texts))]
        return {"results": score([m[0] for m in memes], [m[1] for m in memes])}

    @app.get("/health", response_model=Health)
    def health():
        info = clf.info()
        return {"status": "ok", "model_loaded": True, "device": info["device"],
                "runs": info["runs"], "tasks": info["tasks"], "ocr": info["ocr"],
                "needs_images": needs_images, "queued": worker.jobs.qsize(),
                "memes_scored": worker.memes, "batches": worker.batches}

    the_page = render_page(needs_images)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return the_page

    make_schema = app.openapi

    def openapi():
        # Without FastAPI's 422, which wrong_field_kind turns into a 400.
        schema = make_schema()
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            operation["responses"].pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi
    return app


def _in_range(kind: type, least: float, most: float | None = None, exclusive: bool = False):
    """An argparse type: a `kind` number (int or float) at least `least` (above it with
    `exclusive`), at most `most`. A zero limit does not mean "none": --queue 0 made
    queue.Queue unbounded, and --max-batch 0 or --max-upload-mb 0 refused every request."""
    name = "an integer" if kind is int else "a finite number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}")
        # Written so that NaN fails it; inf too, which int(max_upload_mb * 2**20) cannot take.
        ok = (value > least if exclusive else value >= least) and math.isfinite(value)
        if not ok or (most is not None and value > most):
            bounds = (f"above {least:g}" if exclusive else f"at least {least:g}") + (
                f" and at most {most:g}" if most is not None else "")
            raise argparse.ArgumentTypeError(f"must be {name} {bounds}, got {text}")
        return value
    return parse


@ends_quietly  # Ctrl-C while the runs load: one line, not a traceback (runtime/commands.py)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="serve.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", "--model", dest="run", action="append", required=True,
                   help="a train.py run directory (repeatable: an A and a B run, or one AB run)")
    # The limits' defaults are shown, as the README names them: a newcomer reads --help.
    p.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    p.add_argument("--port", type=_in_range(int, 0, 65535), default=8000,
                   help="0: a free one, named in the line printed at start "
                   "(default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda")
    # choices: a misspelt engine fails here, before the runs load.
    p.add_argument("--ocr", default="auto", choices=("auto", *ENGINES, "none"),
                   help="OCR engine (auto: easyocr; none: every request must carry its "
                   "caption)")
    p.add_argument("--max-upload-mb", type=_in_range(float, 0, exclusive=True),
                   default=DEFAULT_MAX_UPLOAD_MB,
                   help="largest upload, and largest file in it, else 413 (default: %(default)s)")
    p.add_argument("--max-caption-chars", type=_in_range(int, 1),
                   default=DEFAULT_MAX_CAPTION_CHARS,
                   help="longest caption, else 400 (default: %(default)s)")
    p.add_argument("--max-pixels", type=_in_range(int, 1), default=DEFAULT_MAX_PIXELS,
                   help="largest picture (width x height), else 413 before its pixels are "
                        "decoded (default: %(default)s)")
    p.add_argument("--max-batch", type=_in_range(int, 1), default=DEFAULT_MAX_BATCH,
                   help="most memes scored in one forward pass (and in one batch request) "
                        "(default: %(default)s)")
    p.add_argument("--queue", type=_in_range(int, 1), default=DEFAULT_QUEUE,
                   help="requests that may wait for the model before new ones get 503 "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    import uvicorn

    # The address first: the runs and the OCR engine take seconds to load, and a port in use
    # was found by uvicorn only after them, once "serving ... at" had been printed. uvicorn
    # serves on this very socket, so the line names the port --port 0 was given.
    try:
        sock = _bind(args.host, args.port)
    except OSError as e:
        print(f"serve.py: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    with sock:
        # A picture over PIL's own limit warns; here it is refused instead.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            clf = MemeClassifier.load(*args.run, device=args.device, ocr=args.ocr)
            if args.ocr != "none":
                clf.load_ocr()  # now, not in the first request
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            print(f"serve.py: error: {e}", file=sys.stderr)
            return 1
        app = create_app(clf, args.max_upload_mb, args.max_caption_chars, args.max_pixels,
                         args.max_batch, args.queue)
        # Listening before the line is printed: a client that connects as soon as it reads it
        # waits in the backlog for uvicorn rather than being refused.
        sock.listen()
        port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving {', '.join(clf.info()['runs'])} on {clf.device} (OCR: {clf.ocr_spec}) "
              f"at http://{host}:{port}/", flush=True)
        config = uvicorn.Config(app, host=args.host, port=port, log_level="warning")
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            # Ctrl-C is how the service is stopped: uvicorn has shut it down and raises the
            # signal again once done; uvicorn.run ends on it as quietly.
            pass
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn binds its own (Config.bind_socket)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    raise SystemExit(main())
