"""What ``pixelwise benchmark`` measured, as text, JSON and a section of a results file.

    update_results_section("benchmarks/RESULTS.md", section, result_markdown(result, command))
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_MARKER = "pixelwise-benchmark"


@dataclass
class BenchmarkResult:
    """Everything :func:`run_benchmark` measured; ``to_dict`` is the JSON output."""

    settings: dict[str, Any]
    environment: dict[str, Any]
    parameters: int
    multiply_adds: int
    inference: dict[str, float]
    training: dict[str, float]
    memory_mb: dict[str, float]
    xla_inference: dict[str, float] | None = None
    tflite_latency_ms: dict[str, float] = field(default_factory=dict)
    flop_rate: float | None = None
    fraction_of_limit: dict[str, float] = field(default_factory=dict)
    # The same against the multiply-adds the layers execute (atrous taps into padding skipped).
    executed_multiply_adds: int | None = None
    fraction_of_executed_limit: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A human-readable summary, one figure a line."""
        settings = self.settings
        height, width = settings["input_size"]
        lines = [
            f"model              {settings['model']} / {settings['backbone']} "
            f"(output stride {settings['output_stride'] or 'default'}), {height}x{width}, "
            f"{settings['precision']}, fused BN {settings['fused_batchnorm']}",
            f"parameters         {self.parameters:,}",
            f"multiply-adds      {self.multiply_adds / 1e9:.2f} G per image"
            + (f" ({self.executed_multiply_adds / 1e9:.2f} G executed)"
               if self.executed_multiply_adds not in (None, self.multiply_adds) else ""),
            f"inference          {self.inference['latency_ms']:.1f} ms at batch 1, "
            f"{self.inference['images_per_second']:.2f} images/s at batch "
            f"{settings['batch_size']}",
        ]
        if self.xla_inference:
            lines.append(f"inference (XLA)    {self.xla_inference['latency_ms']:.1f} ms at batch 1, "
                         f"{self.xla_inference['images_per_second']:.2f} images/s")
        lines.append(f"training           {self.training['images_per_second']:.2f} images/s "
                     f"({self.training['step_seconds']:.2f} s per step)")
        for threads, latency in self.tflite_latency_ms.items():
            lines.append(f"TFLite             {latency:.1f} ms at batch 1, {threads} thread(s)")
        lines.append(f"peak memory        {self.memory_mb['after_inference']:.0f} MB after "
                     f"inference, {self.memory_mb['after_training']:.0f} MB after training")
        if self.flop_rate:
            lines.append(f"float32 FLOP rate  {self.flop_rate / 1e9:.1f} GFLOP/s (large matmul)")
            lines.extend(f"  {name:<17}{fraction:.1%} of the limit" + (
                f" ({self.fraction_of_executed_limit[name]:.1%} of it for the executed "
                "multiply-adds)" if name in self.fraction_of_executed_limit else "")
                         for name, fraction in self.fraction_of_limit.items())
        return lines


def write_json(data: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def update_results_section(path: str | Path, section: str, markdown: str) -> None:
    """Put ``markdown`` into ``path`` (a Markdown file) between the markers of ``section``,
    replacing what was there, or appended as a new section; other sections stay."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", section):
        raise ValueError(f"section name {section!r}: use letters, digits, '-', '_', '.'")
    path = Path(path)
    begin = f"<!-- {RESULTS_MARKER}:{section} -->"
    end = f"<!-- /{RESULTS_MARKER}:{section} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def print_and_record(markdown: str, results_path: str | Path | None, section: str) -> None:
    """Print a benchmark script's ``markdown``, and put it into ``section`` of
    ``results_path`` when one is given (saying so)."""
    print(markdown)
    if results_path:
        update_results_section(results_path, section, markdown)
        print(f"wrote section {section} of {results_path}")


def publish_figures(figures: dict, *, markdown: str, results_path: str | Path, section: str,
                    json_path: str | Path | None = None) -> None:
    """What a benchmark script does with its figures: ``markdown`` into ``section`` of
    ``results_path`` (characters a section name cannot hold become '-'), the figures as
    JSON into ``json_path`` when given, and printed."""
    update_results_section(results_path, re.sub(r"[^A-Za-z0-9_.-]", "-", section), markdown)
    text = json.dumps(figures, indent=2)
    if json_path:
        Path(json_path).write_text(text + "\n")
    print(text)


def result_markdown(result: BenchmarkResult, command: str) -> str:
    """A Markdown table of one result, with the command that produced it."""
    settings = result.settings
    height, width = settings["input_size"]
    rows = [("parameters", f"{result.parameters:,}"),
            ("multiply-adds / image", f"{result.multiply_adds / 1e9:.2f} G"),
            ("executed multiply-adds / image",
             f"{(result.executed_multiply_adds or result.multiply_adds) / 1e9:.2f} G"),
            ("inference latency, batch 1", f"{result.inference['latency_ms']:.1f} ms"),
            (f"inference, batch {settings['batch_size']}",
             f"{result.inference['images_per_second']:.2f} images/s")]
    if result.xla_inference:
        rows += [("inference latency, batch 1, XLA", f"{result.xla_inference['latency_ms']:.1f} ms"),
                 (f"inference, batch {settings['batch_size']}, XLA",
                  f"{result.xla_inference['images_per_second']:.2f} images/s")]
    rows.append((f"training, batch {settings['batch_size']}",
                 f"{result.training['images_per_second']:.2f} images/s"))
    rows += [(f"TFLite latency, {threads} thread(s)", f"{latency:.1f} ms")
             for threads, latency in result.tflite_latency_ms.items()]
    rows.append(("peak RSS after inference / training",
                 f"{result.memory_mb['after_inference']:.0f} / "
                 f"{result.memory_mb['after_training']:.0f} MB"))
    if result.flop_rate:
        rows.append(("float32 matmul FLOP rate", f"{result.flop_rate / 1e9:.1f} GFLOP/s"))
        rows += [(f"{name}: fraction of the limit", f"{fraction:.1%}")
                 for name, fraction in result.fraction_of_limit.items()]
        rows += [(f"{name}: fraction of the limit, executed multiply-adds", f"{fraction:.1%}")
                 for name, fraction in result.fraction_of_executed_limit.items()]
    environment = result.environment
    header = (f"**{settings['model']} / {settings['backbone']}**, {height}x{width}, "
              f"{settings['precision']}, fused BN {settings['fused_batchnorm']} — "
              f"{environment['cpu']} ({environment['cpu_count']} CPUs), TF "
              f"{environment['tensorflow']}, Keras {environment['keras']}, load average "
              f"{environment['load_average_before']} → {environment['load_average_after']}")
    table = ["| measure | value |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join([header, "", f"`{command}`", "", *table])

__all__ = ["RESULTS_MARKER", "BenchmarkResult", "publish_figures", "result_markdown",
           "update_results_section",
           "write_json"]
