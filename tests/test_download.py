"""Weights downloads (detkit.download), with no network: files come from a ``file://`` mirror or a
local HTTP server in a thread, into a private ``$TORCH_HOME``.

What must hold: a download lands in torchvision's cache under its own name and is read from there
afterwards; a damaged, cut-off or missing file is one line naming the URL, the reason and where a
copy placed by hand is picked up, and leaves nothing behind; offline never opens a connection.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from detkit import download
from detkit.download import fetch_weights, report_downloads_to
from detkit.errors import WeightsDownloadError, WeightsNotFoundError

ORIGINAL_HOST = "https://download.pytorch.org/models"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: two chunks' worth of progress


def published_name(data: bytes, stem: str = "tiny") -> str:
    """torch.hub's naming: the stem, then the first 8 hex digits of the file's SHA-256."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def leftovers(cache: Path) -> list[str]:
    """What a download left in the cache, beside the (empty, reusable) lock file."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def start(self, name: str, total_bytes: int | None) -> None:
        self.calls.append(("start", (name, total_bytes)))

    def advance(self, num_bytes: int) -> None:
        self.calls.append(("advance", num_bytes))

    def finish(self, complete: bool) -> None:
        self.calls.append(("finish", complete))


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads allowed, into an empty ``$TORCH_HOME``; returns the cache folder."""
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``file://`` mirror folder, set as ``DETKIT_WEIGHTS_MIRROR``."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv(download.MIRROR_ENV, folder.as_uri())
    return folder


def test_a_download_lands_in_the_cache_and_is_read_from_there_after(online: Path, mirror: Path) -> None:
    name = published_name(PAYLOAD)
    (mirror / name).write_bytes(PAYLOAD)
    recorder = Recorder()
    with report_downloads_to(recorder):
        path = fetch_weights(f"{ORIGINAL_HOST}/{name}", what="tiny weights")
    assert path == online / name and path.read_bytes() == PAYLOAD
    assert recorder.calls[0] == ("start", (name, len(PAYLOAD))) and recorder.calls[-1] == ("finish", True)
    assert sum(n for kind, n in recorder.calls if kind == "advance") == len(PAYLOAD)
    assert leftovers(online) == [name]  # no partial file beside it
    assert path.stat().st_mode & 0o777 == 0o666 & ~_current_umask()  # not mkstemp's private 0600

    (mirror / name).unlink()  # a second fetch must not need the source
    with report_downloads_to(recorder := Recorder()):
        assert fetch_weights(f"{ORIGINAL_HOST}/{name}", what="tiny weights") == path
    assert recorder.calls == []


def test_a_damaged_download_fails_the_hash_check_and_is_not_kept(online: Path, mirror: Path) -> None:
    name = published_name(PAYLOAD)
    damaged = bytearray(PAYLOAD)
    damaged[1000] ^= 0xFF
    (mirror / name).write_bytes(bytes(damaged))
    with report_downloads_to(recorder := Recorder()), pytest.raises(WeightsDownloadError) as info:
        fetch_weights(f"{ORIGINAL_HOST}/{name}", what="tiny weights")
    assert recorder.calls[-1] == ("finish", False)  # the bar never says "downloaded" for a refused file
    message = str(info.value)
    assert "\n" not in message
    assert f"SHA-256 starts {hashlib.sha256(damaged).hexdigest()[:8]}, not {name[5:13]}" in message
    assert f"{(mirror / name).as_uri()}" in message and f"by hand to {online / name}" in message
    assert leftovers(online) == []


def test_offline_never_opens_the_source_and_says_where_a_copy_goes(
    online: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = published_name(PAYLOAD)
    (mirror / name).write_bytes(PAYLOAD)
    download.go_offline()
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("opened a connection offline"))
    with pytest.raises(WeightsNotFoundError) as info:
        fetch_weights(f"{ORIGINAL_HOST}/{name}", what="tiny weights", alternative="pass weights_path=FILE")
    assert not isinstance(info.value, WeightsDownloadError)
    message = str(info.value)
    assert "offline" in message and f"download {(mirror / name).as_uri()} to {online / name}" in message
    assert message.endswith("or pass weights_path=FILE") and "\n" not in message


def test_without_a_mirror_the_published_url_is_fetched(online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    def refuse(request, timeout):  # noqa: ANN001 - urllib's signature
        import urllib.error

        opened.append(request.full_url)
        raise urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))

    monkeypatch.setattr("urllib.request.urlopen", refuse)
    with pytest.raises(WeightsDownloadError, match="Network is unreachable; retry, set DETKIT_WEIGHTS_MIRROR"):
        fetch_weights(f"{ORIGINAL_HOST}/tiny-00000000.pth", what="tiny weights")
    assert opened == [f"{ORIGINAL_HOST}/tiny-00000000.pth"]


def test_a_file_missing_at_the_mirror_is_named(online: Path, mirror: Path) -> None:
    with pytest.raises(
        WeightsDownloadError, match=r"from file://.*/mirror/tiny-12345678\.pth: no such file at the mirror"
    ):
        fetch_weights(f"{ORIGINAL_HOST}/tiny-12345678.pth", what="tiny weights")


def test_a_full_disk_leaves_nothing_behind(online: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = published_name(PAYLOAD)
    (mirror / name).write_bytes(PAYLOAD)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download.os, "fsync", disk_full)
    with pytest.raises(WeightsDownloadError, match="the disk is full .* MiB free in .*set TORCH_HOME elsewhere"):
        fetch_weights(f"{ORIGINAL_HOST}/{name}", what="tiny weights")
    assert leftovers(online) == []


class _Server(http.server.ThreadingHTTPServer):
    body: bytes = b""
    declared_length: int = 0
    status: int = 200
    requests: int = 0
    delay_s: float = 0.0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests += 1
        time.sleep(self.server.delay_s)
        if self.server.status != 200:
            self.send_error(self.server.status)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(self.server.declared_length))
        self.end_headers()
        self.wfile.write(self.server.body)  # then the connection closes, short or not

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}/models")
    yield server
    server.shutdown()
    server.server_close()


def test_over_http_a_download_arrives_whole(online: Path, http_mirror: _Server) -> None:
    http_mirror.body, http_mirror.declared_length = PAYLOAD, len(PAYLOAD)
    name = published_name(PAYLOAD)
    assert fetch_weights(f"{ORIGINAL_HOST}/{name}", what="tiny weights").read_bytes() == PAYLOAD


def test_processes_fetching_at_once_download_once(online: Path, http_mirror: _Server) -> None:
    """torchrun's workers all build the model at the same moment: one downloads, the rest wait and read it."""
    http_mirror.body, http_mirror.declared_length, http_mirror.delay_s = PAYLOAD, len(PAYLOAD), 0.3
    url = f"{ORIGINAL_HOST}/{published_name(PAYLOAD)}"
    paths: list[Path] = []
    workers = [threading.Thread(target=lambda: paths.append(fetch_weights(url, what="w"))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert http_mirror.requests == 1 and len(set(paths)) == 1 and paths[0].read_bytes() == PAYLOAD


def test_a_cut_off_transfer_is_refused(online: Path, http_mirror: _Server) -> None:
    http_mirror.body, http_mirror.declared_length = PAYLOAD[:5000], len(PAYLOAD)
    cut_off = rf"connection closed (after \d+ of|before all) {len(PAYLOAD)} bytes"
    with pytest.raises(WeightsDownloadError, match=cut_off):
        fetch_weights(f"{ORIGINAL_HOST}/{published_name(PAYLOAD)}", what="tiny weights")
    assert leftovers(online) == []


def test_an_http_error_is_named(online: Path, http_mirror: _Server) -> None:
    http_mirror.status = 404
    with pytest.raises(WeightsDownloadError, match="HTTP 404"):
        fetch_weights(f"{ORIGINAL_HOST}/{published_name(PAYLOAD)}", what="tiny weights")


# ---- torchvision's real ImageNet MobileNetV2 file (../shared/weights), through the model and the CLI ----

SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
MOBILENET_V2 = SHARED_WEIGHTS / "mobilenet_v2-b0353104.pth"
needs_mobilenet_v2 = pytest.mark.skipif(not MOBILENET_V2.is_file(), reason=f"{MOBILENET_V2} absent")

YOLO_MOBILENET = """
solver: {epochs: 1, optimizer: adamw, lr: 0.001, warmup_iters: 1}
data: {batch_size: 2}
model:
  backbone: {name: mobilenet_v2, pretrained: true, fpn: false}
  yolo: {image_size: 64, train_sizes: [64], width_multiple: 0.125}
"""


@needs_mobilenet_v2
def test_the_real_imagenet_file_downloads_passes_its_hash_and_loads(
    online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from detkit.config import BackboneConfig
    from detkit.modeling.backbones import build_backbone

    monkeypatch.setenv(download.MIRROR_ENV, SHARED_WEIGHTS.as_uri())
    backbone = build_backbone(BackboneConfig(name="mobilenet_v2", pretrained=True, fpn=False))
    assert (online / MOBILENET_V2.name).read_bytes() == MOBILENET_V2.read_bytes()
    imagenet = torch.load(MOBILENET_V2, map_location="cpu", weights_only=True)
    torch.testing.assert_close(backbone.body.state_dict()["0.0.weight"], imagenet["features.0.0.weight"])


@needs_mobilenet_v2
def test_a_damaged_copy_of_the_real_file_is_refused(online: Path, mirror: Path) -> None:
    from detkit.config import BackboneConfig
    from detkit.modeling.backbones import build_backbone

    damaged = bytearray(MOBILENET_V2.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one bit, in the middle of a weight tensor
    (mirror / MOBILENET_V2.name).write_bytes(bytes(damaged))
    with pytest.raises(WeightsDownloadError, match="SHA-256 starts .*, not b0353104"):
        build_backbone(BackboneConfig(name="mobilenet_v2", pretrained=True, fpn=False))
    assert leftovers(online) == []


@needs_mobilenet_v2
def test_train_downloads_with_progress_then_runs_offline_from_the_cache(
    online: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli.helpers import synthesize, train_on

    monkeypatch.setenv(download.MIRROR_ENV, SHARED_WEIGHTS.as_uri())
    synthetic = synthesize(tmp_path / "synthetic", num_train=4, num_val=2)
    config = tmp_path / "yolo.yaml"
    config.write_text(YOLO_MOBILENET)
    first = train_on(synthetic, config, tmp_path / "runs", "first", "--pipeline", "yolo")
    assert first.exit_code == 0, first.output
    assert "downloaded mobilenet_v2-b0353104.pth (13.6 MiB)" in first.output
    assert (online / MOBILENET_V2.name).is_file()

    monkeypatch.setenv(download.MIRROR_ENV, (tmp_path / "nowhere").as_uri())
    download.go_offline()  # what `detkit --offline` sets; a second run needs neither network nor mirror
    second = train_on(synthetic, config, tmp_path / "runs", "second", "--pipeline", "yolo")
    assert second.exit_code == 0, second.output
    assert "downloaded" not in second.output


def test_offline_training_with_an_empty_cache_is_one_line(online: Path, tmp_path: Path) -> None:
    from tests.cli.helpers import invoke, synthesize

    synthetic = synthesize(tmp_path / "synthetic", num_train=2, num_val=1)
    config = tmp_path / "yolo.yaml"
    config.write_text(YOLO_MOBILENET)
    result = invoke(
        "--offline",
        "train",
        "--pipeline",
        "yolo",
        "--data",
        str(synthetic / "annotations/instances_train.json"),
        "--images",
        str(synthetic / "train"),
        "--config",
        str(config),
        "--output",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
    )
    assert result.exit_code == 4
    line = result.output.strip().splitlines()[-1]  # after the banner and the validation-data warning
    assert line.startswith("error: ") and "ImageNet weights for mobilenet_v2 are not in the cache" in line
    assert f"to {online / MOBILENET_V2.name}" in line and "model.backbone.pretrained=false" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
