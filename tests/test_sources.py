import numpy as np
import pytest

from aligned_voc import SPEC, make_aligned_voc
from pixelwise.data.palette import read_label
from pixelwise.data.sources import open_source

TRAIN_SIZES = [(48, 64), (64, 48), (40, 56)]
VAL_SIZES = [(45, 60), (35, 50), (56, 44), (40, 65)]


@pytest.fixture
def voc_root(tmp_path):
    return make_aligned_voc(tmp_path / "aligned", {"train": TRAIN_SIZES, "val": VAL_SIZES,
                                                   "same": [(60, 90)] * 3})


def test_folder_source_counts(voc_root):
    source = open_source(voc_root)
    assert source.spec == SPEC
    names = source.split_names("train")
    assert source.num_examples("train") == len(names) == len(TRAIN_SIZES)
    assert source.num_examples("val") + source.num_examples("test") == len(VAL_SIZES)
    expected = np.zeros(256, dtype=np.int64)
    for name in names:
        expected += np.bincount(read_label(voc_root / "SegmentationClass" / f"{name}.png")
                                .reshape(-1), minlength=256)
    assert np.array_equal(source.class_pixel_counts("train"), expected[:3])
    assert source.image_sizes("same") == {(60, 90): 3}
