import re
import socket
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient

from hateful_memes.data.annotations import read_annotations
from hateful_memes.labels import LABELS
from hateful_memes.serving.api import Prediction
from hateful_memes.serving.service import Busy, ModelWorker, create_app, main

from test_api import FakeReader, bomb_png

MAX_MB = 0.05  # 52,428 bytes: small enough to go over in a test


@pytest.fixture(scope="module")
def client(classifier):
    app = create_app(classifier, max_upload_mb=MAX_MB, max_caption_chars=50,
                     max_pixels=200 * 200, max_batch=4)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def meme(demo_data):
    m = read_annotations(demo_data / "annotations" / "test.jsonl")[0]
    return (demo_data / m.img).read_bytes(), m.text


def _check_result(body, text=None):
    assert set(body) == {"text", "ocr", "pred_hate", "pred_pc", "pred_attack", "labels",
                         "model"}
    for task in ("hate", "pc", "attack"):
        assert list(body[f"pred_{task}"]) == list(LABELS[task])
        assert all(0 <= s <= 1 for s in body[f"pred_{task}"].values())
    for task in ("pc", "attack"):
        labels, empty = body["labels"][task], LABELS[task][0]
        assert labels and (labels == [empty] or empty not in labels)
    assert body["model"]["runs"] == ["A", "B"]
    if text is not None:
        assert body["text"] == text and body["ocr"] is False


def test_predict_with_a_caption(client, meme):
    image, text = meme
    r = client.post("/predict", files={"image": ("m.png", image, "image/png")},
                    data={"text": text})
    assert r.status_code == 200, r.text
    _check_result(r.json(), text)


def test_predict_without_a_caption_reads_it_by_ocr(client, meme, classifier):
    r = client.post("/predict", files={"image": ("m.png", meme[0], "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    _check_result(body)
    assert body["ocr"] is True and body["model"]["ocr"] == "easyocr"
    # Re-submitting the OCR'd caption as text (what the page does) scores the same.
    again = client.post("/predict", files={"image": ("m.png", meme[0], "image/png")},
                        data={"text": body["text"]}).json() if body["text"] else body
    assert again["pred_pc"] == pytest.approx(body["pred_pc"], abs=1e-5)


def test_batch(client, meme):
    image, text = meme
    files = [("image", ("a.png", image, "image/png")), ("image", ("b.png", image, "image/png"))]
    r = client.post("/predict/batch", files=files, data={"text": [text, ""]})
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    _check_result(first, text)
    assert second["ocr"] is True


@pytest.mark.parametrize("case,status,reason", [
    ("no file", 400, "no file"),
    ("empty file", 400, "empty file"),
    ("image as a text field", 400, "image: a text field, not a file"),
    ("caption as a file", 400, "text: a file, not a text field"),
    ("batch image as a text field", 400, "image 0: a text field, not a file"),
    ("not an image", 400, "not an image file"),
    ("truncated image", 400, "not a readable image"),
    ("file over the limit", 413, "over the upload limit"),
    ("body over the limit", 413, "request body of"),
    ("bomb header", 413, "decompression bomb"),
    ("too many pixels", 413, "over the limit of 40000"),
    ("caption too long", 400, "over the limit of 50"),
    ("batch too large", 413, "the limit is 4"),
    ("batch texts misaligned", 400, "2 images but 1 texts"),
])
def test_bad_requests_get_a_4xx_with_a_reason(client, meme, case, status, reason):
    from PIL import Image
    import io

    image, _ = meme
    big = io.BytesIO()
    Image.new("L", (300, 300)).save(big, "PNG")
    url, files, data = "/predict", {"image": ("m.png", image, "image/png")}, {}
    if case == "no file":
        files = {}
        data = {"text": "a caption"}
    elif case == "empty file":
        files = {"image": ("m.png", b"", "image/png")}
    elif case == "image as a text field":  # curl -F image=m.png, the @ forgotten
        files, data = {}, {"image": "m.png"}
    elif case == "caption as a file":
        files["text"] = ("caption.txt", b"a caption", "text/plain")
    elif case == "batch image as a text field":
        url, files = "/predict/batch", [("image", ("m.png", image, "image/png"))]
        data = {"image": "m.png"}  # (sent before the files: the first image)
    elif case == "not an image":
        files = {"image": ("m.png", b"%PDF-1.4 hello", "image/png")}
    elif case == "truncated image":
        files = {"image": ("m.png", image[:200], "image/png")}
    elif case == "file over the limit":
        files = {"image": ("m.png", image + b"\0" * 60_000, "image/png")}
    elif case == "body over the limit":
        files = {"image": ("m.png", b"\0" * 200_000, "image/png")}
    elif case == "bomb header":
        files = {"image": ("m.png", bomb_png(), "image/png")}
    elif case == "too many pixels":
        files = {"image": ("m.png", big.getvalue(), "image/png")}
    elif case == "caption too long":
        data = {"text": "x" * 51}
    elif case == "batch too large":
        url, files = "/predict/batch", [("image", ("m.png", image, "image/png"))] * 5
    elif case == "batch texts misaligned":
        url, files = "/predict/batch", [("image", ("m.png", image, "image/png"))] * 2
        data = {"text": ["one"]}
    r = client.post(url, files=files, data=data)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]
    # ... and the service is still up and answering.
    assert client.get("/health").json()["model_loaded"] is True


def test_health_docs_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["runs"] == ["A", "B"] and health["tasks"] == ["hate", "pc", "attack"]
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/"} <= set(schema["paths"])
    assert {"PredictResponse", "Labels", "Health"} <= set(schema["components"]["schemas"])
    # The refusals the service sends are in the schema, and FastAPI's 422, which it never
    # sends, is not.
    for path in ("/predict", "/predict/batch"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"200", "400", "413", "503"} == set(responses), responses
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    # /docs and /redoc load their scripts from the service itself, so they work offline.
    for page_url in ("/docs", "/redoc"):
        docs = client.get(page_url)
        assert docs.status_code == 200
        scripts = re.findall(r'<script src="([^"]+)"', docs.text)
        assert scripts and all(src.startswith("/") for src in scripts), scripts
        assert "cdn" not in docs.text.lower()
        for src in scripts:
            served = client.get(src)
            assert served.status_code == 200 and len(served.content) > 100_000, src
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for needed in ('id="file"', 'id="caption"', 'id="rescore"', 'id="result"', "fetch("):
        assert needed in html
    # Self-contained: nothing is fetched from elsewhere.
    for external in ("http://", "https://", "src=\"//", "<link"):
        assert external not in html


class SlowFake:
    """A classifier stand-in for the worker's queueing (not its scoring): the first call
    waits until released, and every call's batch size is recorded."""

    def __init__(self):
        self.release = threading.Event()
        self.batches = []

    def predict(self, images, texts):
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            self.release.wait(10)
        if "boom" in texts:
            raise RuntimeError("boom")
        return [Prediction(t, False, {}, None, None, {}) for t in texts]


def test_the_worker_batches_what_waits_and_bounds_its_queue():
    fake = SlowFake()
    worker = ModelWorker(fake, max_batch=8, max_queue=3)
    try:
        first = worker.submit(["i"], ["a"])
        deadline = time.time() + 5
        while not fake.batches and time.time() < deadline:
            time.sleep(0.01)
        waiting = [worker.submit(["i"] * 2, [f"b{i}", f"c{i}"]) for i in range(3)]
        with pytest.raises(Busy):
            worker.submit(["i"], ["over"])
        fake.release.set()
        assert [r.text for r in first.result(5)] == ["a"]
        assert [[r.text for r in f.result(5)] for f in waiting] == [
            ["b0", "c0"], ["b1", "c1"], ["b2", "c2"]]
        assert fake.batches[1] == ["b0", "c0", "b1", "c1", "b2", "c2"]  # one pass for three
    finally:
        worker.close()


def test_one_failing_request_does_not_fail_those_batched_with_it():
    fake = SlowFake()
    worker = ModelWorker(fake, max_batch=8, max_queue=8)
    try:
        blocker = worker.submit(["i"], ["a"])
        while not fake.batches:
            time.sleep(0.01)
        bad, good = worker.submit(["i"], ["boom"]), worker.submit(["i"], ["fine"])
        fake.release.set()
        blocker.result(5)
        with pytest.raises(RuntimeError, match="boom"):
            bad.result(5)
        assert [r.text for r in good.result(5)] == ["fine"]
    finally:
        worker.close()


def test_captions_sent_alone_are_batched_beside_memes_with_their_image():
    """Text-only runs take captions without an image: the worker scores those and the memes
    sent with an image in their own calls (predict takes a list of images or none), and each
    request still gets its own results in order."""
    fake = SlowFake()
    calls = []
    predict = fake.predict

    def recorded(images, texts):
        calls.append(images)
        return predict(images, texts)

    fake.predict = recorded
    worker = ModelWorker(fake, max_batch=8, max_queue=8)
    try:
        blocker = worker.submit(["i"], ["a"])
        while not fake.batches:
            time.sleep(0.01)
        bare, pictured = worker.submit([None, None], ["b", "c"]), worker.submit(["i"], ["d"])
        mixed = worker.submit([None, "j"], ["e", "f"])
        fake.release.set()
        blocker.result(5)
        assert [r.text for r in bare.result(5)] == ["b", "c"]
        assert [r.text for r in pictured.result(5)] == ["d"]
        assert [r.text for r in mixed.result(5)] == ["e", "f"]
        assert calls[1:] == [None, ["i", "j"]] and fake.batches[1:] == [["b", "c", "e"],
                                                                        ["d", "f"]]
        assert worker.batches == 3 and worker.memes == 6
    finally:
        worker.close()


def test_without_ocr_a_caption_is_required(tiny_runs, meme):
    from hateful_memes import MemeClassifier

    clf = MemeClassifier.load(tiny_runs / "B", ocr="none", device="cpu")
    with TestClient(create_app(clf)) as client:
        files = {"image": ("m.png", meme[0], "image/png")}
        r = client.post("/predict", files=files)
        assert r.status_code == 400 and "without OCR" in r.json()["detail"]
        r = client.post("/predict", files=files, data={"text": meme[1]})
        assert r.status_code == 200 and r.json()["pred_pc"] is None
        assert r.json()["labels"]["attack"] and r.json()["model"]["runs"] == ["B"]


def test_serve_refuses_a_missing_run(tmp_path, capsys):
    assert main(["--run", str(tmp_path / "nowhere"), "--ocr", "none"]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_serve_refuses_a_misspelt_ocr_engine_before_loading_the_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--run", str(tmp_path / "nowhere"), "--ocr", "paddle"])
    assert exit_.value.code == 2 and "invalid choice: 'paddle'" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [
    ("--max-upload-mb", "0"), ("--max-upload-mb", "nan"), ("--max-upload-mb", "inf"),
    ("--max-caption-chars", "0"), ("--max-pixels", "0"),
    ("--max-batch", "0"), ("--queue", "0"), ("--queue", "-3"), ("--port", "65536"),
    ("--port", "-1")])
def test_serve_refuses_a_setting_out_of_range_before_loading_the_runs(
        tmp_path, capsys, flag, value):
    """--queue 0 made the queue unbounded and --max-batch 0 refused every batch request: each
    setting is a usage error naming it, said before the runs load."""
    with pytest.raises(SystemExit) as exit_:
        main(["--run", str(tmp_path / "nowhere"), "--ocr", "none", flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}: " in err and value in err
    assert "no checkpoint" not in err


def test_serve_says_a_port_in_use_before_loading_the_runs(tmp_path, capsys):
    """It printed "serving ... at http://HOST:PORT/", loaded the runs and the OCR engine, and
    only then did uvicorn fail to bind (exit 3): now one line at once, naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--run", str(tmp_path / "nowhere"), "--ocr", "none", "--port",
                     str(port)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"serve.py: error: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in err and "no checkpoint" not in err and "serving" not in out


def test_serve_serves_on_the_socket_it_bound_and_names_its_port(tiny_runs, monkeypatch, capsys):
    """--port 0 is a free port, and the line that says where the service is names it; the
    socket listens by then, so a client that connects on reading the line is not refused."""
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(
        [(sock.getsockname(), sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
         for sock in sockets or []]))
    assert main(["--run", str(tiny_runs / "A"), "--ocr", "none", "--port", "0"]) == 0
    ((((host, port), listening),),) = served
    assert host == "127.0.0.1" and port != 0 and listening
    assert capsys.readouterr().out.endswith(f" at http://127.0.0.1:{port}/\n")


def test_serve_stopped_by_ctrl_c_ends_quietly(tiny_runs, monkeypatch, capsys):
    """uvicorn shuts the service down at Ctrl-C and then raises it again: stopping it that way
    is no error, and no traceback."""
    import uvicorn

    def interrupted(self, sockets=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(uvicorn.Server, "run", interrupted)
    assert main(["--run", str(tiny_runs / "A"), "--ocr", "none", "--port", "0"]) == 0
    assert capsys.readouterr().err == ""


def test_ctrl_c_while_the_runs_load_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    """Loading the runs and EasyOCR takes seconds; Ctrl-C then printed torch's unpickler's
    traceback. Now as train.py, predict.py and evaluate.py end (runtime/commands.py)."""
    from hateful_memes.serving import service

    def interrupted(*runs, **settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["serve.py"])
    monkeypatch.setattr(service.MemeClassifier, "load", interrupted)
    assert main(["--run", str(tmp_path / "A"), "--ocr", "none", "--port", "0"]) == 130
    assert capsys.readouterr().err.strip() == "serve.py: interrupted"


class NoOCRFake(SlowFake):
    ocr_spec = "none"
    needs_images = True


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_body_sent_without_its_length_is_cut_at_the_limit(path):
    """A chunked upload (no Content-Length) of 10 MB against a 0.05 MB limit: the service
    stops reading it after the limit, rather than spooling it all to disk first."""
    import asyncio

    app = create_app(NoOCRFake(), max_upload_mb=MAX_MB, max_batch=2)
    head = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="m.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    chunks, pulled, sent = 160, 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > chunks + 1:
            return {"type": "http.disconnect"}
        body = (head if pulled == 1 else b"\r\n--x--\r\n" if pulled == chunks + 1
                else b"\0" * 65536)
        return {"type": "http.request", "body": body, "more_body": pulled <= chunks}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("test", 80),
             "client": ("test", 1), "headers": [
                 (b"content-type", b"multipart/form-data; boundary=x")]}
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        app.state.worker.close()
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert pulled <= 5, f"read {pulled} of {chunks + 1} chunks before answering"


@pytest.mark.parametrize("path,images", [("/predict", 1), ("/predict/batch", 2)])
def test_a_body_over_the_limit_is_told_the_limit_with_or_without_its_length(path, images):
    """The same 413, naming the limit, whether the body declared its size (Content-Length) or
    was sent chunked and cut as it arrived."""
    app = create_app(NoOCRFake(), max_upload_mb=MAX_MB, max_batch=2)
    limit = int(MAX_MB * 1024 * 1024) * images + 2 ** 16  # the images and multipart overhead
    head = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="m.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")

    def chunks():
        yield head
        yield from [b"\0" * 65536] * 4
        yield b"\r\n--x--\r\n"

    body = b"".join(chunks())
    assert len(body) > limit
    headers = {"content-type": "multipart/form-data; boundary=x"}
    with TestClient(app) as client:
        chunked = client.post(path, content=chunks(), headers=headers)
        sized = client.post(path, content=body, headers=headers)
    assert "content-length" not in chunked.request.headers
    assert sized.request.headers["content-length"] == str(len(body))
    assert chunked.status_code == sized.status_code == 413
    over = f"is over the limit of {limit} bytes ({MAX_MB:g} MB an image)"
    assert chunked.json()["detail"] == f"request body {over}"
    assert sized.json()["detail"] == f"request body of {len(body)} bytes {over}"


def test_help_names_the_limits_defaults(capsys):
    """--help shows each limit's default, as the README names them (--max-upload-mb 10)."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--max-upload-mb", 10), ("--max-caption-chars", 1000),
                          ("--max-pixels", 50_000_000), ("--max-batch", 16), ("--queue", 64),
                          ("--port", 8000)):
        assert re.search(f"{flag} [A-Z_]+ .*?\\(default: {default}\\)", out), flag


@pytest.fixture(scope="module")
def text_only(text_only_run):
    """The text-only run served without OCR."""
    from hateful_memes import MemeClassifier

    clf = MemeClassifier.load(text_only_run, ocr="none", device="cpu")
    assert not clf.needs_images
    return clf


@pytest.fixture(scope="module")
def text_client(text_only):
    with TestClient(create_app(text_only, max_caption_chars=50, max_batch=4)) as c:
        yield c


def test_text_only_runs_score_a_caption_sent_without_an_image(text_only, text_client, meme):
    """It was refused as "no file": a user who trained without the images had no service."""
    caption = meme[1]
    expected = text_only.predict(texts=[caption])[0].to_dict()
    r = text_client.post("/predict", data={"text": caption})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == caption and body["ocr"] is False
    assert body["pred_attack"] == pytest.approx(expected["pred_attack"], abs=1e-6)
    assert body["pred_hate"] == pytest.approx(expected["pred_hate"], abs=1e-6)
    assert {task: labels for task, labels in body["labels"].items() if labels is not None} == (
        expected["labels"]) and body["pred_pc"] is None
    # A batch of captions alone, each scored as the API scores it.
    captions = [caption, "another caption"]
    r = text_client.post("/predict/batch", data={"text": captions})
    assert r.status_code == 200, r.text
    expected = [p.to_dict() for p in text_only.predict(texts=captions)]
    got = r.json()["results"]
    assert [g["text"] for g in got] == captions
    for g, e in zip(got, expected):
        assert g["pred_attack"] == pytest.approx(e["pred_attack"], abs=1e-6)
    # An image is still taken (the runs ignore it when the caption is given).
    r = text_client.post("/predict", files={"image": ("m.png", meme[0], "image/png")},
                         data={"text": caption})
    assert r.status_code == 200 and r.json()["pred_attack"] == pytest.approx(
        body["pred_attack"], abs=1e-6)
    assert text_client.get("/health").json()["needs_images"] is False


@pytest.mark.parametrize("url,data,reason", [
    ("/predict", {}, "no caption"),
    ("/predict", {"text": "  "}, "no caption"),
    ("/predict", {"text": "x" * 51}, "over the limit of 50"),
    ("/predict/batch", {}, "no caption"),
    ("/predict/batch", {"text": ["one", ""]}, "text 1: no caption"),
    ("/predict/batch", {"text": ["x"] * 5}, "the limit is 4"),
    ("/predict/batch", {"text": ["one", "x" * 51]}, "text 1: caption of 51"),
])
def test_text_only_runs_refuse_a_request_without_a_caption_or_over_a_limit(
        text_client, url, data, reason):
    r = text_client.post(url, data=data)
    assert r.status_code in (400, 413), r.text
    assert reason in r.json()["detail"]
    assert (r.status_code == 413) == (reason == "the limit is 4")


@pytest.mark.parametrize("url,data", [
    ("/predict", {"text": "a caption"}), ("/predict/batch", {"text": ["a", "b"]})])
def test_runs_that_read_pictures_refuse_a_caption_alone_naming_the_image(client, url, data):
    r = client.post(url, data=data)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "no file" in detail and "'image'" in detail
    assert "runs A, B read pictures" in detail


@pytest.mark.parametrize("url", ["/predict", "/predict/batch"])
def test_an_empty_request_is_a_400_naming_the_image(client, url):
    r = client.post(url, data={})
    assert r.status_code == 400 and "no file" in r.json()["detail"]


def test_the_page_takes_a_caption_alone_only_where_the_runs_read_no_pictures(
        client, text_client):
    assert client.get("/health").json()["needs_images"] is True
    assert 'data-needs-images="true"' in client.get("/").text
    page = text_client.get("/").text
    assert 'data-needs-images="false"' in page and 'data-needs-images="true"' not in page


@pytest.fixture(scope="module")
def text_ocr(text_only_run):
    """The text-only run with an OCR stand-in: "read 0", "read 1"... for the images of each
    pass that reads captions."""
    from hateful_memes import MemeClassifier

    return MemeClassifier.load(text_only_run, ocr=FakeReader(), device="cpu")


@pytest.fixture(scope="module")
def text_ocr_client(text_ocr):
    with TestClient(create_app(text_ocr, max_upload_mb=MAX_MB, max_pixels=200 * 200,
                               max_batch=4)) as c:
        yield c


def browser_form(parts: list[tuple]) -> tuple[bytes, dict]:
    """A multipart body as a browser's form sends it, a file input left empty included (no
    file name, no bytes): parts are (name, value) for text, (name, filename, bytes) for files."""
    body = b""
    for name, *value in parts:
        head = f'--x\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if len(value) == 2:
            head += (f'; filename="{value[0]}"\r\nContent-Type: application/octet-stream'
                     ).encode()
        data = value[-1] if isinstance(value[-1], bytes) else value[-1].encode()
        body += head + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--x--\r\n", {"content-type": "multipart/form-data; boundary=x"}


@pytest.mark.parametrize("sent", ["aligned, a blank file input for no image",
                                  "images only for the memes without a caption"])
def test_text_only_runs_score_a_batch_mixing_images_and_captions(
        text_ocr, text_ocr_client, meme, sent):
    """A batch to text-only runs was all images or all captions (1 image and 3 texts: 400; a
    browser form's blank file input dropped, and the alignment with it): now each meme is
    scored by its caption, typed or read by OCR off its image, as for runs that read
    pictures."""
    image, caption = meme
    if sent.startswith("aligned"):
        # Image alone (OCR), caption alone, both (the image unread: not even a picture).
        body, headers = browser_form([
            ("image", "a.png", image), ("text", ""), ("image", "", b""), ("text", caption),
            ("image", "c.png", b"not a picture"), ("text", "another caption")])
        r = text_ocr_client.post("/predict/batch", content=body, headers=headers)
    else:
        r = text_ocr_client.post("/predict/batch", files=[("image", ("a.png", image))],
                                 data={"text": ["", caption, "another caption"]})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    texts = ["read 0", caption, "another caption"]
    assert [g["text"] for g in got] == texts and [g["ocr"] for g in got] == [True, False, False]
    for g, expected in zip(got, text_ocr.predict(texts=texts)):
        assert g["pred_attack"] == pytest.approx(expected.pred_attack, abs=1e-6)


@pytest.mark.parametrize("image", ["a picture", "not a picture", "empty file", "bomb header",
                                   "truncated"])
def test_text_only_runs_score_a_caption_without_decoding_the_image_beside_it(
        text_ocr_client, meme, monkeypatch, image):
    """The image sent beside a caption was decoded and then ignored, and a bad one refused a
    meme the runs could score: it is not read, only held to the upload limit."""
    from hateful_memes.serving import service

    picture, caption = meme
    data = {"a picture": picture, "not a picture": b"%PDF-1.4", "empty file": b"",
            "bomb header": bomb_png(), "truncated": picture[:200]}[image]
    decoded, open_image = [], service.open_image
    monkeypatch.setattr(service, "open_image",
                        lambda *a, **k: decoded.append(a) or open_image(*a, **k))
    alone = text_ocr_client.post("/predict", data={"text": caption}).json()
    r = text_ocr_client.post("/predict", files={"image": ("m.png", data, "image/png")},
                             data={"text": caption})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == caption and r.json()["ocr"] is False
    assert r.json()["pred_attack"] == pytest.approx(alone["pred_attack"], abs=1e-6)
    files = [("image", ("a.png", data)), ("image", ("b.png", picture))]
    r = text_ocr_client.post("/predict/batch", files=files, data={"text": [caption, "x"]})
    assert r.status_code == 200, r.text
    assert [g["ocr"] for g in r.json()["results"]] == [False, False] and not decoded


@pytest.mark.parametrize("url,files,data,status,reason", [
    ("/predict", {"image": ("m.png", b"\0" * 60_000)}, {"text": "a caption"}, 413,
     "image (m.png): over the upload limit of 0.05 MB"),
    ("/predict/batch", [("image", ("m.png", b"\0" * 60_000))], {"text": ["a caption"]}, 413,
     "image 0 (m.png): over the upload limit"),
    ("/predict", {"image": ("m.png", b"%PDF-1.4")}, {}, 400, "not an image file"),
    ("/predict/batch", [("image", ("a.png", b"%PDF-1.4"))], {"text": ["a caption", ""]}, 400,
     "image 1 (a.png): not an image file"),
    ("/predict/batch", [("image", ("a.png", b"x"))] * 2, {"text": ["", "b", "c"]}, 400,
     "2 images but 3 texts: give none or one per image (empty for OCR), or one per empty "
     "text"),
])
def test_text_only_runs_still_hold_an_image_to_the_upload_limit_and_read_one_for_ocr(
        text_ocr_client, url, files, data, status, reason):
    r = text_ocr_client.post(url, files=files, data=data)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]


def test_runs_that_read_pictures_name_the_meme_a_browser_form_sent_without_one(client, meme):
    """A blank file input beside its caption was dropped, and the batch refused as "1 images
    but 2 texts"; now the meme without its picture is named."""
    body, headers = browser_form([("image", "a.png", meme[0]), ("text", ""),
                                  ("image", "", b""), ("text", "a caption")])
    r = client.post("/predict/batch", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("image 1: no file") and "read pictures" in r.json()[
        "detail"]


@pytest.mark.parametrize("runs", ["read pictures", "text only"])
def test_a_blank_file_input_without_captions_is_named_not_left_out(
        client, text_ocr_client, meme, runs):
    """A batch of file inputs with one left blank and no 'text' fields was scored without the
    blank one: fewer results than memes sent, and no word of it."""
    body, headers = browser_form([("image", "a.png", meme[0]), ("image", "", b""),
                                  ("image", "c.png", meme[0])])
    served = client if runs == "read pictures" else text_ocr_client
    r = served.post("/predict/batch", content=body, headers=headers)
    assert r.status_code == 400, r.text
    start = "image 1: no file" if runs == "read pictures" else "text 1: no caption"
    assert r.json()["detail"].startswith(start), r.json()["detail"]
