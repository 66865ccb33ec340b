"""The check that a command failed with one line naming the problem, for CLI tests."""


def one_line_error(result, *needles: str) -> str:
    """``result`` (a CliRunner result) exited 1 with exactly one ``Error:`` line, no
    traceback, holding every one of ``needles``; that line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], result.output
    return lines[0]
