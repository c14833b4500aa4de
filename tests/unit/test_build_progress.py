"""examples/demo_models/build_models.py's progress: a tqdm bar on a terminal, plain lines in a CI log."""

from __future__ import annotations

import io
import re

import pytest

from examples.demo_models import build_models
from examples.demo_models.build_models import Progress


def test_without_a_terminal_progress_is_one_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(["mnist", "tabular"])
    progress("mnist", "epoch  1/30  loss=2.3026")
    progress.model_done()
    progress("tabular", "written to build/models/tabular")
    progress.model_done()
    progress.close()
    out, err = capsys.readouterr()
    lines = out.splitlines(keepends=True)
    assert len(lines) == 2, out
    assert re.fullmatch(r"\[ +\d+\.\ds\] \[mnist\] epoch  1/30  loss=2\.3026\n", lines[0]), out
    assert re.fullmatch(r"\[ +\d+\.\ds\] \[tabular\] written to build/models/tabular\n", lines[1]), out
    assert err == ""  # no bar, no carriage returns: stdout is no terminal


def test_on_a_terminal_the_bar_counts_models(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(build_models.sys, "stdout", screen)
    progress = Progress(["mnist", "tabular"])
    progress("mnist", "epoch  1/30")
    progress.model_done()
    progress.close()
    text = screen.getvalue()
    assert "[mnist] epoch  1/30\n" in text  # the step line, above the bar
    assert re.search(r"mnist: 1/2 models \|.*\| 00:00, epoch  1/30", text), text
