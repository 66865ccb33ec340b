"""The demo: its settings fit its own data, it trains and scores (shortened, slow), and it
handles earlier demo folders. The full demo is timed by hand (minutes)."""

import json

import pytest
from click.testing import CliRunner

from pixelwise.cli import cli
from pixelwise.data.synthetic import read_params
from pixelwise.demo import (
    DEMO_SIZE,
    SUMMARY_FILENAME,
    cpu_has_native_bfloat16,
    demo_config,
    discard_stale_run,
    run_demo,
)


def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bfloat16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_native_bfloat16(cpuinfo)
    assert not cpu_has_native_bfloat16(tmp_path / "absent")


def test_demo_config_takes_its_arguments(tmp_path):
    config = demo_config(tmp_path, size=96, epochs=3, mixed_precision=None)
    assert config.data.input_size == (96, 96) and config.data.source == str(tmp_path.resolve())
    assert config.train.epochs == 3 and config.train.precision_policy == "float32"
    assert demo_config(tmp_path, mixed_precision="bfloat16").train.precision_policy == \
        "mixed_bfloat16"
    automatic = demo_config(tmp_path).train.mixed_precision
    assert automatic == ("bfloat16" if cpu_has_native_bfloat16() else None)


def test_the_demo_config_fits_its_own_data(tmp_path):
    """The demo's defaults agree with each other: the model takes the data's image size,
    and the ASPP rates are scaled to the small feature map at that size."""
    result = run_demo(tmp_path, num_images=12, train=False, echo=lambda line: None,
                      progress=False)
    params = read_params(result.data_root)["params"]
    config = demo_config(result.data_root, mixed_precision=None)
    assert config.data.input_size == (params["height"], params["width"]) == (DEMO_SIZE,) * 2
    assert DEMO_SIZE % config.model.input_multiple == 0
    feature_side = DEMO_SIZE // config.model.input_multiple
    # A rate below the feature side reaches real features off-centre; rate 6 on the 6 x 6
    # map does not (its branch acts as a second 1x1 conv). Kept: the demo's published
    # figures were made with it.
    assert [rate < feature_side for rate in config.model.aspp_rates] == [True, True, False]
    assert config.model.backbone_weights is None  # the demo runs offline


@pytest.mark.slow
def test_the_demo_trains_and_scores_on_its_own_data(tmp_path):
    """The whole demo at its own settings, shortened to one epoch on a few images: it
    trains, scores the test split and draws; a rerun reuses the finished run."""
    lines = []
    result = run_demo(tmp_path, num_images=16, epochs=1, mixed_precision=None,
                      echo=lines.append, progress=False)
    assert result.run_dir == tmp_path / "run" and (result.run_dir / "best.keras").is_file()
    summary = json.loads((tmp_path / SUMMARY_FILENAME).read_text())
    assert 0.0 <= summary["test_mean_iou"] <= 1.0 and summary["epochs_done"] == 1
    assert summary["config"] == demo_config(result.data_root, epochs=1,
                                            mixed_precision=None).to_dict()
    assert all(path.is_file() for path in result.figures)
    again = []
    run_demo(tmp_path, num_images=16, epochs=1, mixed_precision=None, echo=again.append,
             progress=False)
    assert not any("replacing" in line for line in again)


def test_an_earlier_demo_run_is_replaced_only_when_stale(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = demo_config(tmp_path / "data", epochs=3, mixed_precision=None)
    config.save(run_dir / "config.json")
    (run_dir / "best.keras").write_bytes(b"model")
    lines = []
    discard_stale_run(run_dir, config, data_changed=False, echo=lines.append)
    assert (run_dir / "best.keras").is_file() and lines == []
    discard_stale_run(run_dir, demo_config(tmp_path / "data", epochs=4, mixed_precision=None),
                      data_changed=False, echo=lines.append)
    assert not run_dir.exists() and "train.epochs: 3 -> 4" in lines[0]
    run_dir.mkdir()
    config.save(run_dir / "config.json")
    discard_stale_run(run_dir, config, data_changed=True, echo=lines.append)
    assert not run_dir.exists() and "regenerated" in lines[1]


def test_demo_without_training_generates_and_checks(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--n", "12", "--size", "64",
                                      "--no-train"])
    assert result.exit_code == 0, result.output
    assert f"synthetic dataset: {out / 'data'}" in result.output
    assert "split 'test'" in result.output and "NOT OK" not in result.output
    assert not (out / "run").exists()
    params = json.loads((out / "data" / "pixelwise_synthetic.json").read_text())["params"]
    assert (params["num_images"], params["height"]) == (12, 64)
