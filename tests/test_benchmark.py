"""pixelwise benchmark: the arithmetic of the limits, the results file, and one tiny run
through the command line (nothing asserted on time)."""

import json

import pytest
from click.testing import CliRunner

from pixelwise.benchmark import (
    BenchmarkSettings,
    command_line,
    default_section_name,
    fractions_of_limit,
    parse_thread_counts,
    update_results_section,
)
from pixelwise.cli import cli
from pixelwise.io import parse_size


def test_fractions_of_limit_by_hand():
    # 1 GFLOP/s and 0.25 G multiply-adds per image: inference needs 0.5 GFLOP per image,
    # so the limit is 2 images/s; training needs 1.5 GFLOP, so 2/3 images/s.
    fractions = fractions_of_limit(1e9, 250_000_000, {"inference": (0.5, "inference"),
                                                      "training": (0.5, "training")})
    assert fractions["inference"] == pytest.approx(0.25)
    assert fractions["training"] == pytest.approx(0.75)


def test_parsers_and_settings_refuse_bad_values():
    assert parse_size("384") == (384, 384)
    assert parse_size("384x512") == (384, 512)
    with pytest.raises(ValueError, match="expected S or HxW"):
        parse_size("big")
    assert parse_thread_counts("1,2") == (1, 2)
    assert parse_thread_counts("none") == ()
    with pytest.raises(ValueError, match="at least 1"):
        parse_thread_counts("0")
    with pytest.raises(ValueError, match="precision 'float16' is not one of"):
        BenchmarkSettings(precision="float16")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        BenchmarkSettings(batch_size=0)
    assert default_section_name(BenchmarkSettings(fused_batchnorm=False)) == (
        "deeplabv3_resnet50_384x384_float32_unfused-bn")


def test_results_section_is_replaced_and_others_kept(tmp_path):
    path = tmp_path / "RESULTS.md"
    update_results_section(path, "a", "first A")
    update_results_section(path, "b", "only B")
    update_results_section(path, "a", "second A")
    text = path.read_text()
    assert text.startswith("# Benchmark results\n")
    assert "second A" in text and "first A" not in text and "only B" in text
    assert text.index("second A") < text.index("only B")  # replaced in place
    assert text.count("<!-- pixelwise-benchmark:a -->") == 1
    with pytest.raises(ValueError, match="section name"):
        update_results_section(path, "a b", "x")


def test_cli_benchmark_tiny_model(tmp_path):
    """A DeepLab v3 on the tiny backbone at 32 px: every figure present and positive, the
    JSON and the RESULTS section written. (On MobileNetV2 the same command spends half a
    minute tracing the training step and converting to TFLite; the figures' plumbing is
    the same.)"""
    json_path = tmp_path / "bench.json"
    results = tmp_path / "RESULTS.md"
    arguments = ["benchmark", "deeplabv3", "--backbone", "tiny",
                 "--input-size", "32", "--batch-size", "2",
                 "--latency-repeats", "1", "--throughput-repeats", "1", "--train-steps", "1",
                 "--warmup", "1", "--tflite-threads", "1", "--matmul-size", "64",
                 "--json", str(json_path), "--results", str(results)]
    outcome = CliRunner().invoke(cli, arguments)
    assert outcome.exit_code == 0, outcome.output
    assert "multiply-adds" in outcome.output and "TFLite" in outcome.output
    figures = json.loads(json_path.read_text())
    assert figures["settings"]["input_size"] == [32, 32]
    assert figures["parameters"] > 0 and figures["multiply_adds"] > 0
    for value in (figures["inference"]["latency_ms"], figures["inference"]["images_per_second"],
                  figures["training"]["images_per_second"], figures["tflite_latency_ms"]["1"],
                  figures["memory_mb"]["after_training"], figures["flop_rate"],
                  figures["fraction_of_limit"]["training"]):
        assert value > 0
    assert figures["memory_mb"]["after_training"] >= figures["memory_mb"]["after_inference"]
    # At 32 px the ASPP's atrous taps mostly read padding, which the layers skip.
    assert 0 < figures["executed_multiply_adds"] < figures["multiply_adds"]
    assert (figures["fraction_of_executed_limit"]["training"]
            == pytest.approx(figures["fraction_of_limit"]["training"]
                             * figures["executed_multiply_adds"] / figures["multiply_adds"]))
    section = results.read_text()
    assert "<!-- pixelwise-benchmark:deeplabv3_tiny_32x32_float32 -->" in section
    # The section names the command that reproduces it.
    assert ("`pixelwise benchmark deeplabv3 --backbone tiny "
            "--input-size 32x32 --batch-size 2 --num-classes 21 --precision float32 "
            "--fused-batchnorm --no-xla --tflite-threads 1 --latency-repeats 1 "
            "--throughput-repeats 1 --train-steps 1 --warmup 1 --matmul-size 64`") in section
    # A width other than 1 is part of that command (the tiny backbone has only 1).
    settings = BenchmarkSettings(model="deeplabv3", backbone="mobilenetv2",
                                 width_multiplier=0.35, input_size=(32, 32), batch_size=2)
    assert command_line(settings).startswith(
        "pixelwise benchmark deeplabv3 --backbone mobilenetv2 --width-multiplier 0.35 "
        "--input-size 32x32 --batch-size 2 ")


def test_cli_benchmark_reports_bad_input_size():
    outcome = CliRunner().invoke(cli, ["benchmark", "deeplabv3", "--input-size", "40"])
    assert outcome.exit_code != 0
    assert "multiples of 16" in outcome.output


def test_benchmark_like_a_run_builds_that_runs_architecture(tmp_path):
    """--like-run measures a run folder's architecture (its light DeepLab v3+ head and its
    dataset's class count), and refuses architecture flags beside it."""
    from pixelwise.benchmark import build_benchmark_model, command_line, settings_like_run
    from pixelwise.data.spec import DatasetSpec
    from pixelwise.run_options import run_config_from_options

    run = tmp_path / "run"
    run.mkdir()
    run_config_from_options(tmp_path, model="deeplabv3plus", backbone="mobilenetv2",
                            width_multiplier=0.35, aspp_filters=16, aspp_rates=(),
                            low_level_filters=8, decoder_filters=12).save(run / "config.json")
    DatasetSpec(class_names=("road", "sky", "car"),
                colors=((1, 1, 1), (2, 2, 2), (3, 3, 3)), ignore_label=11).save(
        run / "pixelwise_dataset.json")
    settings = settings_like_run(run, input_size=(32, 32), batch_size=2)
    model = build_benchmark_model(settings)
    assert model.output_shape[-1] == 3
    assert model.get_layer("decoder_refine1_conv").filters == 12
    assert not [layer for layer in model.layers if "atrous" in layer.name]
    assert command_line(settings).startswith(f"pixelwise benchmark --like-run {run} ")

    mixed = CliRunner().invoke(cli, ["benchmark", "unet", "--like-run", str(run)])
    assert mixed.exit_code != 0 and "leave out name" in mixed.output
    missing = CliRunner().invoke(cli, ["benchmark", "--like-run", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "config.json: missing" in missing.output


def test_machine_description_names_the_cpu_and_its_count():
    import os

    from pixelwise.benchmark import cpu_name, machine_description

    assert machine_description() == f"{cpu_name()}, {os.cpu_count()} CPUs"
    assert cpu_name()
