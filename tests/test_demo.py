"""The demo's settings and its handling of earlier demo folders (the full demo is timed by
hand: it trains a ResNet-50 for minutes)."""

import json

from click.testing import CliRunner

from pixelwise.cli import cli
from pixelwise.demo import cpu_has_native_bfloat16, demo_config, discard_stale_run


def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bfloat16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_native_bfloat16(cpuinfo)
    assert not cpu_has_native_bfloat16(tmp_path / "absent")


def test_demo_config_is_deeplab_resnet50_from_scratch(tmp_path):
    config = demo_config(tmp_path, size=96, epochs=3, mixed_precision=None)
    assert (config.model.name, config.model.backbone) == ("deeplabv3", "resnet50")
    assert config.model.backbone_weights is None and config.model.bn_momentum == 0.9
    assert config.data.input_size == (96, 96) and config.data.source == str(tmp_path.resolve())
    assert config.train.epochs == 3 and config.train.precision_policy == "float32"
    assert demo_config(tmp_path, mixed_precision="bfloat16").train.precision_policy == \
        "mixed_bfloat16"


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
