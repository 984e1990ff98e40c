"""The model registry and `artwalk models download`, against a local HTTP server.

The server (127.0.0.1, a free port, one daemon thread) serves a few MB of seeded
random bytes and honours ``Range``; a test switches it into a bad mode: a corrupted
copy, a transfer cut off halfway, or a server that answers 200 to a Range request.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from artwalk import download as dl
from artwalk import models
from artwalk.errors import ArtwalkError, WeightsMissingError
from artwalk.models import REGISTRY, ModelSpec, register, weights_file
from conftest import run_cli

PAYLOAD = random.Random(0).randbytes(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
HALF = len(PAYLOAD) // 2


class Handler(BaseHTTPRequestHandler):
    """GET /weights.bin, with Range support; ``server.mode`` makes it misbehave."""

    timeout = 5  # a stuck client cannot hold a server thread for long

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        if self.path.split("?")[0] != "/weights.bin":
            self.send_error(404)
            return
        data = bytes(b ^ 0xFF for b in PAYLOAD[:64]) + PAYLOAD[64:] if srv.mode == "corrupt" else PAYLOAD
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and srv.mode != "ignore-range":
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "cut":  # promise everything, send half, hang up
            self.wfile.write(body[: HALF - start])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.mode, srv.ranges = "ok", []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ARTWALK_CACHE", str(folder))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(dl, "TIMEOUT_S", 5.0)
    return folder


def _register(name: str, server, sha256: str | None) -> ModelSpec:
    url = f"http://127.0.0.1:{server.server_address[1]}/weights.bin"
    return register(ModelSpec(name, "file", url, "upscale", "test", "served by the test", f"{name}.bin", sha256))


@pytest.fixture
def pinned(server, cache):
    spec = _register("test-pinned", server, SHA)
    yield spec
    REGISTRY.pop(spec.name, None)


@pytest.fixture
def unpinned(server, cache):
    spec = _register("test-unpinned", server, None)
    yield spec
    REGISTRY.pop(spec.name, None)


def test_download_checks_and_places_the_file(pinned, server, cache):
    path = dl.download(pinned.name, progress=True)
    assert path == cache / "test-pinned.bin" and path.read_bytes() == PAYLOAD
    assert not (cache / "test-pinned.bin.part").exists()
    assert (cache / "test-pinned.bin.sha256").read_text().split() == [SHA, "test-pinned.bin"]
    assert weights_file(pinned.name) == path
    assert next(r for r in dl.list_models() if r.name == pinned.name).present
    assert server.ranges == [None]
    assert dl.download(pinned.name, progress=False) == path  # already here: nothing fetched
    assert server.ranges == [None]


def test_corrupted_file_is_refused_and_deleted(pinned, server, cache):
    server.mode = "corrupt"
    with pytest.raises(dl.ChecksumError) as err:
        dl.download(pinned.name, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "test-pinned.bin" in msg and SHA in msg and "got " in msg
    assert not (cache / "test-pinned.bin").exists()
    assert not (cache / "test-pinned.bin.part").exists()
    assert not (cache / "test-pinned.bin.sha256").exists()


def test_cut_transfer_keeps_part_and_resumes(pinned, server, cache):
    server.mode = "cut"
    with pytest.raises(dl.DownloadError) as err:
        dl.download(pinned.name, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("could not download test-pinned.bin from http://127.0.0.1:")
    assert "check the network or pass --url" in msg and "rerun to resume" in msg
    part = cache / "test-pinned.bin.part"
    assert part.stat().st_size == HALF
    assert not (cache / "test-pinned.bin").exists()

    server.mode = "ok"
    path = dl.download(pinned.name, progress=False)
    assert server.ranges[-1] == f"bytes={HALF}-"
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_server_that_ignores_range_restarts_cleanly(pinned, server, cache):
    cache.mkdir(parents=True)
    (cache / "test-pinned.bin.part").write_bytes(PAYLOAD[:HALF])
    server.mode = "ignore-range"
    path = dl.download(pinned.name, progress=False)
    assert server.ranges == [f"bytes={HALF}-"]
    assert path.read_bytes() == PAYLOAD  # not the first half twice


def test_finished_part_is_placed_after_a_416(pinned, server, cache):
    cache.mkdir(parents=True)
    (cache / "test-pinned.bin.part").write_bytes(PAYLOAD)  # killed between the last byte and the rename
    path = dl.download(pinned.name, progress=False)
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert path.read_bytes() == PAYLOAD


def test_unpinned_file_is_trusted_on_first_use(unpinned, server, cache):
    path = dl.download(unpinned.name, progress=False)
    assert models.recorded_sha256(path) == SHA
    assert weights_file(unpinned.name) == path
    path.write_bytes(PAYLOAD[:-1] + b"\0")  # changed behind our back
    with pytest.raises(WeightsMissingError, match=rf"expected {SHA}, got .*--force`$"):
        weights_file(unpinned.name)
    # a fresh fetch must match what was recorded first; --force trusts anew
    path.unlink()
    server.mode = "corrupt"
    with pytest.raises(dl.ChecksumError):
        dl.download(unpinned.name, progress=False)
    path = dl.download(unpinned.name, force=True, progress=False)
    assert models.recorded_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() != SHA


def test_force_and_url_override(pinned, server, cache):
    cache.mkdir(parents=True)
    (cache / "test-pinned.bin").write_bytes(b"stale")
    with pytest.raises(WeightsMissingError, match="do not match"):
        dl.download(pinned.name, progress=False)
    bad = f"http://127.0.0.1:{server.server_address[1]}/elsewhere.bin"
    with pytest.raises(dl.DownloadError, match=r"HTTP 404 .*pass --url$"):
        dl.download(pinned.name, url=bad, force=True, progress=False)
    assert (cache / "test-pinned.bin").read_bytes() == b"stale"  # nothing replaced it
    path = dl.download(pinned.name, url=pinned.source + "?mirror", force=True, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_unreachable_server_is_one_line(cache):
    spec = register(ModelSpec("test-down", "file", "http://127.0.0.1:9/w.bin", "motion", "test", "", "w.bin"))
    try:
        with pytest.raises(dl.DownloadError) as err:
            dl.download(spec.name, progress=False)
    finally:
        REGISTRY.pop(spec.name)
    assert "\n" not in str(err.value) and "could not download w.bin from http://127.0.0.1:9/w.bin" in str(err.value)
    assert not (cache / "w.bin").exists()


def test_missing_weights_name_the_command(cache):
    with pytest.raises(WeightsMissingError) as err:
        weights_file("RealESRGAN_x4plus")
    assert "artwalk models download RealESRGAN_x4plus" in str(err.value) and "\n" not in str(err.value)
    assert not dl.is_present(REGISTRY["RealESRGAN_x4plus"])


def test_registry_entries_are_complete():
    hub = {s.name for s in REGISTRY.values() if s.kind == "hub"}
    assert {"kandinsky-2-2-prior", "kandinsky-2-2-decoder", "kandinsky-2-2-decoder-inpaint",
            "sd21-unclip", "sd15", "sd2-inpaint"} <= hub
    files = {s.name: s for s in REGISTRY.values() if s.kind == "file"}
    assert {"film", "film-fp16", "RealESRGAN_x4plus", "RealESRGAN_x2plus", "realesr-general-x4v3",
            "realesr-general-wdn-x4v3", "realesr-animevideov3"} <= set(files)
    for spec in REGISTRY.values():
        assert spec.licence and spec.stage in ("keyframes", "motion", "upscale")
        if spec.kind == "file":
            assert spec.source.startswith("https://") and spec.source.endswith("/" + spec.filename)
    assert models.hub_id("sd15") == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert models.hub_id("some/repo") == "some/repo"
    with pytest.raises(ArtwalkError):
        models.hub_id("film")


def test_hub_model_offline_is_one_line(monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as err:
        dl.download("artwalk-tests/not-a-real-repo", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg
    assert "artwalk models download artwalk-tests/not-a-real-repo" in msg
    missing = str(models.hub_missing("sd15"))
    assert "not in the Hugging Face cache" in missing and "artwalk models download sd15" in missing


def test_cli_models_list_and_unknown_download():
    proc = run_cli("-m", "pipeline", "models", "list", check=True)
    for name in REGISTRY:
        if not name.startswith("test-"):
            assert re.search(rf"^{re.escape(name)} ", proc.stdout, re.M), name
    proc = run_cli("-m", "pipeline", "models", "download", "nope")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: unknown model 'nope' (see `artwalk models list`)"]
