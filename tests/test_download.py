"""Download, resume, MD5 check and safe extraction, against a loopback HTTP server."""

import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelwise.cli import cli
from pixelwise.data.download import (
    EXTRACTED_MARKER, TEMP_PREFIX, ChecksumError, DownloadError, UnsafeArchiveError,
    download_voc2012, extract_beside, extract_tar)
from pixelwise.data.palette import read_label, write_label
from pixelwise.data.voc import find_voc_root

TAR_NAME = "VOCtrainval_test.tar"


# --- a small VOC-layout tar ------------------------------------------------------------

def make_voc_folder(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012 under ``root`` with three tiny pairs; returns the label maps."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    label_maps = {}
    for name in ("2007_000001", "2007_000002", "2007_000003"):
        image = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        label_map = rng.choice(np.array([0, 1, 15, 255], dtype=np.uint8), size=(12, 16))
        write_label(voc / "SegmentationClass" / f"{name}.png", label_map)
        label_maps[name] = label_map
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n2007_000002\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000003\n")
    (voc / "ImageSets/Segmentation/trainval.txt").write_text(
        "2007_000001\n2007_000002\n2007_000003\n")
    return label_maps


@pytest.fixture(scope="module")
def voc_tar(tmp_path_factory) -> tuple[bytes, dict[str, np.ndarray]]:
    """The bytes of a VOC-layout tar, and the label maps inside it."""
    build = tmp_path_factory.mktemp("voc_build")
    label_maps = make_voc_folder(build)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(build / "VOCdevkit", arcname="VOCdevkit")
    return buffer.getvalue(), label_maps


def md5_of(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


# --- the loopback server -----------------------------------------------------------------

class ServerState:
    def __init__(self, payload: bytes):
        self.payload = payload
        self.range_headers: list[str | None] = []  # one entry per request
        self.cut_after: int | None = None  # the next response stops after this many bytes
        self.ignore_range = False
        self.bodies: list[bytes] = []  # served (first in, first out) instead of the payload


class TarHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        state.range_headers.append(range_header)
        if self.path != f"/{TAR_NAME}":
            self.send_error(404)
            return
        body = state.bodies.pop(0) if state.bodies else state.payload
        start = 0
        if range_header and not state.ignore_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        data = body[start:]
        if state.cut_after is not None:
            data, state.cut_after = data[: state.cut_after], None
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(voc_tar):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), TarHandler)
    httpd.state = ServerState(voc_tar[0])
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/{TAR_NAME}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def assert_extracted_right(voc_dir: Path, label_maps: dict[str, np.ndarray]) -> None:
    layout = find_voc_root(voc_dir.parent.parent)
    assert layout.root == voc_dir
    examples = layout.examples("trainval")
    assert [example.name for example in examples] == sorted(label_maps)
    for example in examples:
        assert np.array_equal(read_label(example.label_path), label_maps[example.name])
        with Image.open(example.image_path) as image:
            assert image.format == "JPEG" and image.size == (16, 12)


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# --- downloads -------------------------------------------------------------------------------

def test_clean_download_is_verified_extracted_and_found(server, voc_tar, tmp_path):
    payload, label_maps = voc_tar
    voc_dir = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    assert voc_dir == tmp_path / "VOCdevkit" / "VOC2012"
    assert server.state.range_headers == [None]
    assert (tmp_path / TAR_NAME).read_bytes() == payload
    assert not (tmp_path / f"{TAR_NAME}.part").exists()
    assert_extracted_right(voc_dir, label_maps)
    # Nothing left of the temporary extraction folder.
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(TEMP_PREFIX)]


def test_second_call_makes_no_request(server, voc_tar, tmp_path):
    payload, _ = voc_tar
    first = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    jpeg = first / "JPEGImages" / "2007_000001.jpg"
    written_at = jpeg.stat().st_mtime_ns
    second = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    assert second == first
    assert len(server.state.range_headers) == 1
    assert jpeg.stat().st_mtime_ns == written_at


def test_interrupted_download_resumes_with_range(server, voc_tar, tmp_path):
    payload, label_maps = voc_tar
    server.state.cut_after = 5000
    voc_dir = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    assert server.state.range_headers == [None, "bytes=5000-"]
    assert (tmp_path / TAR_NAME).read_bytes() == payload
    assert_extracted_right(voc_dir, label_maps)


def test_partial_file_from_an_earlier_run_is_continued(server, voc_tar, tmp_path):
    payload, label_maps = voc_tar
    (tmp_path / f"{TAR_NAME}.part").write_bytes(payload[:3000])
    voc_dir = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    assert server.state.range_headers == ["bytes=3000-"]
    assert_extracted_right(voc_dir, label_maps)


def test_server_ignoring_range_restarts_from_zero(server, voc_tar, tmp_path):
    payload, label_maps = voc_tar
    # A partial file whose bytes are not the archive's: appending to it would corrupt it.
    (tmp_path / f"{TAR_NAME}.part").write_bytes(b"x" * 3000)
    server.state.ignore_range = True
    voc_dir = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    assert server.state.range_headers == ["bytes=3000-"]  # asked, got a 200, started over
    assert (tmp_path / TAR_NAME).read_bytes() == payload
    assert_extracted_right(voc_dir, label_maps)


def test_corrupted_download_fails_after_one_retry(server, voc_tar, tmp_path):
    payload, _ = voc_tar
    corrupted = bytearray(payload)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.state.payload = bytes(corrupted)
    with pytest.raises(ChecksumError) as caught:
        download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    message = str(caught.value)
    assert server.url in message and md5_of(payload) in message and md5_of(corrupted) in message
    assert len(server.state.range_headers) == 2  # downloaded, deleted, downloaded once more
    assert listing(tmp_path) == []  # no extraction, no .part, no tar


def test_corrupted_first_download_is_replaced_by_a_good_one(server, voc_tar, tmp_path):
    payload, label_maps = voc_tar
    server.state.bodies = [payload[:-1] + b"!"]
    voc_dir = download_voc2012(tmp_path, url=server.url, md5=md5_of(payload), progress=False)
    assert server.state.range_headers == [None, None]
    assert_extracted_right(voc_dir, label_maps)


def test_from_file_verifies_extracts_and_leaves_the_source_alone(server, voc_tar, tmp_path):
    payload, label_maps = voc_tar
    source = tmp_path / "copied" / TAR_NAME
    source.parent.mkdir()
    source.write_bytes(payload)
    stat_before = source.stat()
    dest = tmp_path / "data"
    voc_dir = download_voc2012(dest, url=server.url, md5=md5_of(payload), from_file=source,
                               progress=False)
    assert server.state.range_headers == []
    assert_extracted_right(voc_dir, label_maps)
    assert source.read_bytes() == payload
    assert (source.stat().st_mtime_ns, source.stat().st_size) == (stat_before.st_mtime_ns,
                                                                  stat_before.st_size)
    assert listing(source.parent) == [TAR_NAME]


def test_from_file_with_wrong_md5_is_refused_and_kept(voc_tar, tmp_path):
    payload, _ = voc_tar
    source = tmp_path / TAR_NAME
    source.write_bytes(payload)
    with pytest.raises(ChecksumError, match=f"{TAR_NAME}: MD5 is {md5_of(payload)}, expected 0+"):
        download_voc2012(tmp_path / "data", md5="0" * 32, from_file=source, progress=False)
    assert source.read_bytes() == payload
    assert not (tmp_path / "data").exists()


def test_cli_download_from_file(voc_tar, tmp_path):
    payload, label_maps = voc_tar
    source = tmp_path / TAR_NAME
    source.write_bytes(payload)
    dest = tmp_path / "data"
    result = CliRunner().invoke(cli, ["data", "download", "voc2012", "--dest", str(dest),
                                      "--from", str(source), "--md5", md5_of(payload)])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(str(dest / "VOCdevkit" / "VOC2012"))
    assert_extracted_right(dest / "VOCdevkit" / "VOC2012", label_maps)

    wrong = CliRunner().invoke(cli, ["data", "download", "voc2012", "--dest", str(tmp_path / "x"),
                                     "--from", str(source), "--md5", "f" * 32])
    assert wrong.exit_code == 1
    assert "MD5 is" in wrong.output and str(source) in wrong.output


def test_unreachable_server_names_the_url_and_the_offline_route(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{TAR_NAME}"  # nothing listens there now
    with pytest.raises(DownloadError) as caught:
        download_voc2012(tmp_path, url=url, md5="0" * 32, progress=False)
    assert url in str(caught.value) and "--from FILE" in str(caught.value)


def test_http_error_names_the_url(server, tmp_path):
    url = server.url.replace(TAR_NAME, "missing.tar")
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        download_voc2012(tmp_path, url=url, md5="0" * 32, progress=False)
    assert url in str(caught.value) and "--from FILE" in str(caught.value)
    assert len(server.state.range_headers) == 1  # an HTTP error is not retried


def test_a_tar_without_voc2012_is_refused_before_extraction(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        add_file(archive, "something/else.txt", b"hello")
    source = tmp_path / "other.tar"
    source.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="no VOCdevkit/VOC2012/ folder"):
        download_voc2012(tmp_path / "data", md5=md5_of(buffer.getvalue()), from_file=source,
                         progress=False)
    assert not (tmp_path / "data").exists()


# --- safe extraction ---------------------------------------------------------------------------

def add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def add_special(archive: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    archive.addfile(info)


def write_tar(path: Path, build) -> Path:
    with tarfile.open(path, "w") as archive:
        add_file(archive, "good/first.txt", b"written before the bad member")
        build(archive)
        add_file(archive, "good/last.txt", b"after")
    return path


UNSAFE_CASES = {
    "parent": lambda archive, outside: add_file(archive, "good/../../escaped.txt", b"evil"),
    "dotdot_start": lambda archive, outside: add_file(archive, "../escaped.txt", b"evil"),
    "absolute": lambda archive, outside: add_file(archive, str(outside / "escaped.txt"), b"evil"),
    "symlink": lambda archive, outside: (
        add_special(archive, "good/link", tarfile.SYMTYPE, str(outside)),
        add_file(archive, "good/link/escaped.txt", b"evil")),
    "hardlink": lambda archive, outside: add_special(archive, "good/hard", tarfile.LNKTYPE,
                                                     "/etc/passwd"),
    "device": lambda archive, outside: add_special(archive, "good/null", tarfile.CHRTYPE),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_CASES))
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    (work / "existing.txt").write_text("keep")
    outside = tmp_path / "outside"
    tar_path = write_tar(tmp_path / "bad.tar",
                         lambda archive: UNSAFE_CASES[case](archive, outside))
    before = listing(tmp_path)
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_tar(tar_path, work / "dest")
    assert "bad.tar: member" in str(caught.value) and "refusing" in str(caught.value)
    assert listing(tmp_path) == before
    assert not (work / "dest").exists() and not outside.exists()


def test_extract_tar_places_members_and_refuses_to_overwrite(tmp_path):
    tar_path = write_tar(tmp_path / "ok.tar", lambda archive: add_file(archive, "./top.txt", b"1"))
    dest = tmp_path / "dest"
    placed = extract_tar(tar_path, dest)
    assert sorted(placed) == [dest / "good", dest / "top.txt"]
    assert (dest / "good" / "first.txt").read_bytes() == b"written before the bad member"
    assert (dest / "top.txt").read_bytes() == b"1"
    assert listing(dest) == ["good", "good/first.txt", "good/last.txt", "top.txt"]
    with pytest.raises(FileExistsError, match="good"):
        extract_tar(tar_path, dest)


def make_two_member_tar(path: Path) -> tuple[Path, int]:
    """A tar with a small and a 20 kB member; returns it and where the big one's data starts."""
    big = np.random.default_rng(0).integers(0, 256, size=20_000, dtype=np.uint8).tobytes()
    with tarfile.open(path, "w") as archive:
        add_file(archive, "VOCdevkit/VOC2012/a.txt", b"a")
        add_file(archive, "VOCdevkit/VOC2012/big.bin", big)
    with tarfile.open(path) as archive:
        return path, archive.getmember("VOCdevkit/VOC2012/big.bin").offset_data


def test_interrupted_extraction_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    tar_path, _ = make_two_member_tar(tmp_path / "complete.tar")
    written = []
    original_makefile = tarfile.TarFile.makefile

    def makefile_then_fail(self, tarinfo, targetpath):
        if written:  # the second file: the disk fills up
            raise OSError(28, "No space left on device")
        original_makefile(self, tarinfo, targetpath)
        written.append(targetpath)

    monkeypatch.setattr(tarfile.TarFile, "makefile", makefile_then_fail)
    dest = tmp_path / "dest"
    with pytest.raises(OSError, match="No space left"):
        extract_tar(tar_path, dest)
    assert written and Path(written[0]).name == "a.txt"  # extraction had begun
    assert dest.is_dir() and listing(dest) == []  # no VOCdevkit, no temporary folder


def test_truncated_tar_is_refused_before_anything_is_written(tmp_path):
    complete, data_start = make_two_member_tar(tmp_path / "complete.tar")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(complete.read_bytes()[: data_start + 10_000])
    with pytest.raises(ValueError, match="truncated.tar: cannot read the tar"):
        extract_tar(truncated, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_find_voc_root_extracts_a_tar_beside_itself_once(voc_tar, tmp_path):
    payload, label_maps = voc_tar
    tar_path = tmp_path / TAR_NAME
    tar_path.write_bytes(payload)
    layout = find_voc_root(tar_path)
    folder = tmp_path / "VOCtrainval_test"
    assert layout.root == folder / "VOCdevkit" / "VOC2012"
    assert_extracted_right(layout.root, label_maps)
    assert (folder / EXTRACTED_MARKER).is_file()
    jpeg = layout.root / "JPEGImages" / "2007_000001.jpg"
    written_at = jpeg.stat().st_mtime_ns
    assert extract_beside(tar_path, progress=False) == folder
    assert find_voc_root(tar_path).root == layout.root
    assert jpeg.stat().st_mtime_ns == written_at
    assert sorted(path.name for path in tmp_path.iterdir()) == ["VOCtrainval_test", TAR_NAME]
    assert sorted(path.name for path in folder.iterdir()) == [EXTRACTED_MARKER, "VOCdevkit"]
