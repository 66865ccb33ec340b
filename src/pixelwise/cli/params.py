"""Parameter types and error handling shared by the `pixelwise` commands."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import click

from pixelwise.io import parse_duration, parse_size


class ParsedType(click.ParamType):
    """A flag's text turned into a value by a library parser; its ValueError becomes click's
    parameter error. A value of ``parsed_types`` (a default already parsed) passes as is."""

    def __init__(self, name: str, parse: Callable[[str], object],
                 parsed_types: tuple[type, ...]) -> None:
        self.name = name
        self._parse = parse
        self._parsed_types = parsed_types

    def convert(self, value, param, ctx):
        if isinstance(value, self._parsed_types):
            return value
        try:
            return self._parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def parse_rates(text: str) -> tuple[int, ...]:
    """``6,12,18`` -> (6, 12, 18); ``none`` -> () (no atrous branch)."""
    text = str(text).strip()
    if text.lower() == "none":
        return ()
    try:
        rates = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: give rates as whole numbers separated by commas "
                         f"(e.g. 6,12,18), or none") from None
    if any(rate < 1 for rate in rates):
        raise ValueError(f"{text!r}: atrous rates must be at least 1")
    return rates


# ``S`` or ``HxW`` -> (height, width); ``3h``, ``2h30m``, ``90m`` or seconds -> seconds;
# ``6,12,18`` or ``none`` -> atrous rates.
SIZE = ParsedType("size", parse_size, (tuple,))
DURATION = ParsedType("duration", parse_duration, (int, float))
RATES = ParsedType("rates", parse_rates, (tuple,))


class LibraryChoice(click.Choice):
    """A ``click.Choice`` whose choices are a library constant, read when a command first
    needs them, so `pixelwise --help` and the data commands do not import Keras to learn
    the model names (importing it takes seconds)."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._choices: tuple[str, ...] | None = None
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(str(choice) for choice in self._load())
        return self._choices

    @choices.setter
    def choices(self, _ignored) -> None:  # click.Choice.__init__ assigns it
        pass


def library_choice(module: str, constant: str, *, exclude: Sequence = (None,),
                   extra: Sequence[str] = ()) -> LibraryChoice:
    """The values of ``module.constant`` (less ``exclude``, plus ``extra``) as choices."""

    def load() -> list[str]:
        values = getattr(importlib.import_module(module), constant)
        return [value for value in values if value not in exclude] + list(extra)

    return LibraryChoice(load)


def registry_choice(what: str) -> LibraryChoice:
    """The model registry's model names, backbones or output strides as choices."""

    def load() -> Sequence:
        from pixelwise.models import registry

        return {"model": registry.MODEL_NAMES, "backbone": registry.all_backbone_names(),
                "output_stride": registry.all_output_strides()}[what]

    return LibraryChoice(load)


def debugging(ctx: click.Context | None = None) -> bool:
    """Whether `pixelwise --debug` was given (errors then keep their traceback)."""
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


def one_line(error: BaseException, limit: int = 400) -> str:
    """The first line of ``error``'s message (TensorFlow's run to dozens), at most ``limit``
    characters."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    first = str(message).strip().splitlines()[0] if str(message).strip() else str(message)
    return first if len(first) <= limit else first[: limit - 3] + "..."


@contextmanager
def reported(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the library's errors (default: OSError, ValueError) into a clean exit 1 with
    their message (with `pixelwise --debug`: raised as they are)."""
    try:
        yield
    except (errors or (OSError, ValueError)) as error:
        if debugging():
            raise
        raise click.ClickException(str(error)) from error
