"""`pixelwise model summary | list | show` and `pixelwise benchmark`: sizes and speeds of
the models, and the named trained models (`pixelwise.zoo`)."""

from __future__ import annotations

from pathlib import Path

import click

from pixelwise.cli.root import cli
from pixelwise.cli.params import SIZE, library_choice, registry_choice, reported


@cli.group()
def model() -> None:
    """Build and describe the segmentation models."""


@model.command("summary")
@click.argument("name")
@click.option("--input-size", default="384", show_default=True, type=SIZE,
              help="Image size: S for S x S, or HxW (e.g. 384x512).")
@click.option("--backbone", default=None,
              help="resnet50, mobilenetv2, mobilenetv3large or mobilenetv3small (or tiny, for "
                   "tests); default: the model's own (lraspp: mobilenetv3large; the others: "
                   "resnet50).")
@click.option("--output-stride", default=None, type=int,
              help="DeepLab: 16 (default) or 8; U-Net: 32.")
@click.option("--num-classes", default=21, show_default=True, help="Logit channels.")
@click.option("--width-multiplier", default=1.0, show_default=True,
              help="MobileNetV2's alpha.")
@click.option("--multi-grid/--no-multi-grid", default=False, show_default=True,
              help="ResNet50 conv5 rates x (1, 2, 4).")
def model_summary(name: str, input_size: tuple[int, int], backbone: str | None,
                  output_stride: int | None, num_classes: int, width_multiplier: float,
                  multi_grid: bool) -> None:
    """Parameters and multiply-adds of model NAME (deeplabv3, deeplabv3plus, unet, lraspp)."""
    from pixelwise.models import summarize_model
    from pixelwise.run_options import MULTI_GRID

    with reported(ValueError):
        lines = summarize_model(
            name, input_size=input_size, num_classes=num_classes, backbone=backbone,
            output_stride=output_stride, width_multiplier=width_multiplier,
            multi_grid=MULTI_GRID if multi_grid else None)
    for line in lines:
        click.echo(line)


@model.command("list")
def model_list() -> None:
    """The named trained models: name, classes, input size, scores, files."""
    from pixelwise.zoo import known_models_text, list_models

    with reported(OSError, ValueError):
        cards = list_models()
    if not cards:
        click.echo(known_models_text())
        return
    for card in cards:
        names = card.spec.class_names
        classes = ", ".join(names[:6]) + (f", ... ({len(names)})" if len(names) > 6 else "")
        click.echo(f"{card.name}: {len(names)} classes ({classes}); input "
                   f"{card.input_size[0]}x{card.input_size[1]}; {card.scores_text()}; files: "
                   f"{', '.join(f'{kind} {name}' for kind, name in sorted(card.files.items()))}")
        if card.description:
            click.echo(f"    {card.description}")


@model.command("show")
@click.argument("name")
def model_show(name: str) -> None:
    """The card of the named model NAME (JSON, with the folder it lies in)."""
    from pixelwise.zoo import card_json, find_model

    with reported(OSError, ValueError):
        card = find_model(name)
    click.echo(card_json(card))


@cli.command("benchmark")
@click.argument("name", default="deeplabv3")
@click.option("--backbone", default=None, type=registry_choice("backbone"),
              help="Default: the model's own (lraspp: mobilenetv3large; the others: "
                   "resnet50).")
@click.option("--output-stride", default=None, type=int,
              help="DeepLab: 16 (default) or 8; U-Net: 32.")
@click.option("--input-size", default="384", show_default=True, type=SIZE,
              help="S for S x S, or HxW.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Batch of the throughput and training figures.")
@click.option("--num-classes", default=21, show_default=True, type=click.IntRange(min=1))
@click.option("--width-multiplier", default=1.0, show_default=True, help="MobileNetV2's alpha.")
@click.option("--precision", default="float32", show_default=True,
              type=library_choice("pixelwise.benchmark", "PRECISIONS"))
@click.option("--fused-batchnorm/--no-fused-batchnorm", default=True, show_default=True,
              help="TensorFlow's fused batch norm kernel (same weights) or Keras's layer.")
@click.option("--recompute/--no-recompute", default=False, show_default=True,
              help="Train with the backbone's stages recomputed in the backward pass.")
@click.option("--xla/--no-xla", default=False, show_default=True,
              help="Also time inference compiled with XLA.")
@click.option("--tflite-threads", default="1,2", show_default=True,
              help="TFLite interpreter threads to time, comma-separated; 'none' to skip.")
@click.option("--latency-repeats", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--throughput-repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--train-steps", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--matmul-size", default=4096, show_default=True, type=click.IntRange(min=0),
              help="Side of the matmul that measures the FLOP rate; 0 skips it.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the figures as JSON here ('-': standard output).")
@click.option("--results", "results_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Markdown file (e.g. benchmarks/RESULTS.md) whose section to write.")
@click.option("--section", default=None,
              help="Section name in --results (default: model_backbone_size_precision).")
@click.option("--like-run", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Measure the architecture of this run folder (model, backbone, head, "
                   "class count), with random weights, instead of NAME and its flags.")
@click.pass_context
def benchmark(ctx: click.Context, name: str, backbone: str | None, output_stride: int | None,
              input_size: tuple[int, int], batch_size: int, num_classes: int,
              width_multiplier: float, precision: str, fused_batchnorm: bool, recompute: bool,
              xla: bool,
              tflite_threads: str, latency_repeats: int, throughput_repeats: int,
              train_steps: int, warmup: int, matmul_size: int, json_path: Path | None,
              results_path: Path | None, section: str | None, like_run: Path | None) -> None:
    """Speed and size of model NAME: latency, throughput, training, memory, TFLite."""
    import json

    from click.core import ParameterSource

    from pixelwise import benchmark as bench

    architecture = ("name", "backbone", "output_stride", "num_classes", "width_multiplier")
    given = [param for param in architecture
             if ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE]
    if like_run is not None and given:
        raise click.UsageError(f"--like-run takes the architecture from {like_run}; leave out "
                               f"{', '.join(given)}")
    with reported(OSError, ValueError):
        measured = dict(
            input_size=input_size, batch_size=batch_size, precision=precision,
            fused_batchnorm=fused_batchnorm, recompute=recompute,
            latency_repeats=latency_repeats,
            throughput_repeats=throughput_repeats, train_steps=train_steps, warmup=warmup,
            xla_inference=xla, tflite_threads=bench.parse_thread_counts(tflite_threads),
            matmul_size=matmul_size)
        if like_run is not None:
            settings = bench.settings_like_run(like_run, **measured)
        else:
            from pixelwise.models.registry import default_backbone

            settings = bench.BenchmarkSettings(
                model=name, backbone=backbone or default_backbone(name),
                output_stride=output_stride,
                num_classes=num_classes, width_multiplier=width_multiplier, **measured)
        result = bench.run_benchmark(settings,
                                     echo=lambda line: click.echo(f"... {line}", err=True))
    for line in result.lines():
        click.echo(line)
    # Report writing: to move into pixelwise.benchmark (its owner's file) as one function.
    if json_path is not None:
        if str(json_path) == "-":
            click.echo(json.dumps(result.to_dict(), indent=2))
        else:
            bench.write_json(result.to_dict(), json_path)
    if results_path is not None:
        bench.update_results_section(
            results_path, section or bench.default_section_name(settings),
            bench.result_markdown(result, bench.command_line(settings)))
