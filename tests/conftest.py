import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VOC_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "voc-samples" / "VOC2012"


@pytest.fixture
def voc_samples() -> Path:
    """The four real VOC 2012 pairs and the official lists; skipped where absent."""
    if not VOC_SAMPLES.is_dir():
        pytest.skip(f"{VOC_SAMPLES} not present")
    return VOC_SAMPLES
