"""What a `kho` command shows on the terminal, and where everything else goes.

The console gets kho's own stage lines (the `kho.*` loggers at INFO: a batch loaded with its ledger line, a gate's
result, a build step, a publication); everything the tools kho drives print for themselves — dbt's per-node lines,
Airflow's and Cosmos's structlog output, Python warnings — goes to one log file, `$KHO_HOME/logs/kho.log`, which
commands name when they start work or fail. No colour codes reach a stream that is not a terminal, nor the file.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from kho.config import KhoConfig
from kho.screen import wants_colour

LOG_NAME = "kho.log"
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

QUIET_ENVIRONMENT = {
    # dbt: no colour codes on its console lines (which kho sends to the log file) nor in its own dbt.log.
    "DBT_USE_COLORS": "False",
    "DBT_USE_COLORS_FILE": "False",
    # Airflow renders its structlog lines for the log file: no colour there either.
    "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
    # Cosmos looks this up at import and warns when Airflow's config lacks it; kho emits no lineage events.
    "AIRFLOW__OPENLINEAGE__NAMESPACE": "kho",
}
"""Settings read by dbt, Airflow and Cosmos when they start in this process or its children; set only where the
environment does not already choose."""


def log_file(config: KhoConfig) -> Path:
    return config.home / "logs" / LOG_NAME


class _LogFile(logging.FileHandler):
    """The log file, created with its directory at the first line written (a command that logs nothing, such as
    `kho --help` or `kho status`, leaves no file behind)."""

    def _open(self):  # no annotation: typeshed names a private return type
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def text_stream(self) -> TextIO:
        """The open file, for writers that want a stream rather than log records (Airflow's structlog)."""
        if self.stream is None:
            self.stream = self._open()
        return self.stream


class _StageLines(logging.Filter):
    """The console's share: kho's own records; the rest is the log file's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "kho" or record.name.startswith("kho.")


class _ConsoleFormatter(logging.Formatter):
    def __init__(self, colour: bool) -> None:
        super().__init__("%(message)s")
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
            if self.colour:
                text = f"\033[{31 if record.levelno >= logging.ERROR else 33}m{text}\033[0m"
        return text


class _LinesToLog:
    """A text stream whose lines become records of one logger: dbt's console, written into the log file."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.logger.info("%s", line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


_handlers: dict[str, logging.Handler] = {}
_set_here: list[str] = []
_levels: dict[str, int] = {}
"""The logger levels `setup` changed (root and kho), which `teardown` puts back."""
_structlog_io: list[object] = []
"""Where Airflow's structlog wrote before `after_airflow_import` pointed it at the log file."""
"""The QUIET_ENVIRONMENT settings `setup` made, which `teardown` takes back."""


def setup(config: KhoConfig, console: TextIO | None = None) -> Path:
    """Route this process's logging: kho's stage lines to the console (stderr), everything at INFO to the log file,
    Python warnings with it. Idempotent; returns the log file."""
    for name, value in QUIET_ENVIRONMENT.items():
        if name not in os.environ:
            os.environ[name] = value
            _set_here.append(name)
    path = log_file(config)
    stream = console or sys.stderr
    file_handler = _LogFile(path, encoding="utf-8", delay=True)
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    console_handler = logging.StreamHandler(stream)
    console_handler.addFilter(_StageLines())
    console_handler.setFormatter(_ConsoleFormatter(wants_colour(stream)))
    console_handler.setLevel(logging.INFO)
    root = logging.getLogger()
    for handler in _handlers.values():
        root.removeHandler(handler)
        handler.close()
    _handlers.update(file=file_handler, console=console_handler)
    for name in ("", "kho"):
        _levels.setdefault(name, logging.getLogger(name or None).level)
    root.setLevel(logging.INFO)
    logging.getLogger("kho").setLevel(logging.INFO)
    _install()
    _capture_warnings()  # py.warnings: to the file, with the rest of the tools' output
    _capture_dbt_console()
    return path


def _capture_warnings() -> None:
    """Python warnings through logging. `captureWarnings(True)` does nothing when it believes it is on already: GX
    turns it on at import, and whatever later put `warnings.showwarning` back (a `catch_warnings` block, another
    library) leaves logging believing so while warnings print to stderr. Off and on again makes it hold now."""
    logging.captureWarnings(False)
    logging.captureWarnings(True)


def _install() -> None:
    root = logging.getLogger()
    for handler in _handlers.values():
        if handler not in root.handlers:
            root.addHandler(handler)


def _capture_dbt_console() -> None:
    """dbt prints a line per node to stdout when kho (or Cosmos) runs it in-process; dbt's own capture hook sends
    those lines to a stream of our choosing instead: the log file."""
    try:
        from dbt_common.events.functions import capture_stdout_logs
    except ImportError:  # no dbt in this environment: nothing to capture
        return
    capture_stdout_logs(_LinesToLog(logging.getLogger("dbt")))  # type: ignore[arg-type]


def teardown() -> None:
    """Take kho's handlers off again (a test runs many commands in one process, each with its own streams)."""
    root = logging.getLogger()
    for handler in _handlers.values():
        root.removeHandler(handler)
        handler.close()
    _handlers.clear()
    for name, level in _levels.items():
        logging.getLogger(name or None).setLevel(level)
    _levels.clear()
    structlog = sys.modules.get("structlog")
    if structlog is not None and _structlog_io:
        factory = structlog.get_config().get("logger_factory")
        if hasattr(factory, "io"):
            factory.io = _structlog_io.pop()
    _structlog_io.clear()
    while _set_here:
        os.environ.pop(_set_here.pop(), None)
    logging.captureWarnings(False)
    dbt = sys.modules.get("dbt_common.events.functions")
    if dbt is not None:
        dbt.stop_capture_stdout_logs()


def after_airflow_import() -> None:
    """Airflow configures logging when first imported: its root handler writes to stdout and its structlog loggers
    too. Send both to the log file instead, and put kho's handlers back (Airflow's dictConfig removed them)."""
    file_handler = _handlers.get("file")
    if not isinstance(file_handler, _LogFile):
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in _handlers.values():
            root.removeHandler(handler)
    _install()
    root.setLevel(logging.INFO)
    logging.getLogger("kho").setLevel(logging.INFO)
    _capture_warnings()
    structlog = sys.modules.get("structlog")  # Airflow's logging library, configured by Airflow: not kho's own
    if structlog is None:
        return
    factory = structlog.get_config().get("logger_factory")
    if hasattr(factory, "io"):
        if not _structlog_io:
            _structlog_io.append(factory.io)
        factory.io = file_handler.text_stream()
