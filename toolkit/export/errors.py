"""The export's errors: one line each, naming the cause and the fix (`toolkit.errors.ToolkitError` exit codes:
2 for what the caller asked wrong, 1 for an export or a check that failed)."""

from __future__ import annotations

from toolkit.errors import EXIT_USAGE, ToolkitError


class ExportUsageError(ToolkitError):
    """A bad --model, --checkpoint, --example-input, --out or --device: the caller must change the command."""

    exit_code = EXIT_USAGE


class ExportFailedError(ToolkitError):
    """The model could not be exported in the format asked for, or its export disagrees with eager."""
