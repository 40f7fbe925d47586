# Copyright (c) The proscale Authors. All rights reserved.
"""Stage bookkeeping of the demo: cached stages that run the project's tools.

A stage is one step of the demo (generate the data, train a model, evaluate
it, ...). :class:`StageRunner` runs it unless an earlier run already finished
it with the same parameters: every finished stage leaves a record
``<work_dir>/stages/<name>.json`` (written atomically, after the stage's
outputs) holding a key (a hash of the stage's parameters and of the keys of
the stages it builds on), its output files and its results. A stage is reused
when its record has the same key and all its outputs still exist, so
changing a setting reruns exactly the stages it affects.

The stages run the user-facing command-line tools (``tools/train.py``,
``tools/test.py``, ``tools/eco/*.py``, ...) through their ``main`` functions
in this process, so the heavy imports are paid once. A tool's complete output
goes to the stage's log file; the console shows the tool's progress lines
(training and test iterations with their ETA) condensed to one line each.
"""
import contextlib
import hashlib
import importlib.util
import inspect
import io
import json
import os
import os.path as osp
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    TextIO)

from mmengine.logging import MMLogger

from ..utils import atomic_open, package_files_root

# The shipped configs/ and tools/ (the repository's, through links, in a
# checkout; proscale/.mim in an installed wheel).
REPO_ROOT = package_files_root()
STAGE_KEY_FILE = '.demo_stage_key'

_ITER_LINE = re.compile(r'Iter\((?P<mode>train|val|test)\)\s*'
                        r'\[\s*(?P<step>\d+)/(?P<total>\d+)\]')
_FIELD = r'(?:^|\s){}: (?P<value>\S+)'


class StageError(RuntimeError):
    """A demo stage failed; the message names the stage and its log."""


def atomic_write_json(obj: Any, path: str) -> None:
    """Write ``obj`` as JSON so that readers never see a partial file.

    Args:
        obj (Any): A JSON-serialisable object.
        path (str): Destination file.
    """
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2)


def stage_key(params: Any) -> str:
    """Hash JSON-serialisable parameters (a stage's, a config's) into a
    short key."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def condense_progress(line: str) -> Optional[str]:
    """Shorten a tool's progress line for the console.

    Args:
        line (str): One line of a tool's output.

    Returns:
        str, optional: ``'train   120/600  loss 12.34  eta 0:02:10'`` for
        an mmengine iteration log line, None for every other line (the
        final metrics line of a test included: the demo reports results
        itself).
    """
    match = _ITER_LINE.search(line)
    if match is None:
        return None
    fields = {}
    for name in ('eta', 'loss', 'time'):
        found = re.search(_FIELD.format(name), line[match.end():])
        if found is not None:
            fields[name] = found.group('value')
    if 'time' not in fields:
        return None
    width = len(match.group('total'))
    text = (f"{match.group('mode'):<5} "
            f"{match.group('step'):>{width}}/{match.group('total')}")
    if 'loss' in fields:
        text += f"  loss {fields['loss']}"
    if 'eta' in fields:
        text += f"  eta {fields['eta']}"
    return text


class _ToolOutput(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a tool run in this process: every
    line goes to the stage log, condensed progress lines to the console.

    Loggers created by the tool keep a reference to it; once the tool has
    finished (:meth:`detach`), what they still write follows ``sys.stdout``.
    """

    def __init__(self, log: TextIO, console: TextIO, indent: str) -> None:
        super().__init__()
        self._log: Optional[TextIO] = log
        self._console = console
        self._indent = indent
        self._pending = ''

    def writable(self) -> bool:
        return True

    def detach(self) -> None:
        """Stop writing to the stage log (the tool has finished)."""
        self._log = None

    def write(self, text: str) -> int:
        if self._log is None:
            return sys.stdout.write(text)
        self._log.write(text)
        lines = re.split(r'[\r\n]', self._pending + text)
        self._pending = lines.pop()
        for line in lines:
            progress = condense_progress(line)
            if progress is not None:
                self._console.write(f'{self._indent}{progress}\n')
                self._console.flush()
        return len(text)

    def flush(self) -> None:
        if self._log is not None:
            self._log.flush()


def _load_tool(script: str) -> ModuleType:
    """Import a repository script (e.g. ``tools/train.py``) as a module."""
    path = osp.join(REPO_ROOT, script)
    if not osp.isfile(path):
        raise FileNotFoundError(f'tool {script} not found at {path}')
    name = 'proscale_tool_' + re.sub(r'\W', '_', script[:-3])
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextlib.contextmanager
def _patched_argv(argv: List[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


@dataclass
class StageResult:
    """A finished stage.

    Attributes:
        key (str): The stage's key (hash of its parameters and inputs).
        results (dict): What the stage reported (JSON-serialisable).
        reused (bool): Whether an earlier run's record was reused.
    """
    key: str
    results: Dict[str, Any]
    reused: bool


class StageRunner:
    """Run demo stages once, record them and run tools with logged output.

    Args:
        work_dir (str): The demo's output folder.
        console (TextIO): Where progress goes (the demo's stdout).
        logger (MMLogger): The demo's logger (stage headers, results).
    """

    def __init__(self, work_dir: str, console: TextIO,
                 logger: MMLogger) -> None:
        self.work_dir = work_dir
        self.console = console
        self.logger = logger
        self.record_dir = osp.join(work_dir, 'stages')
        self.log_dir = osp.join(work_dir, 'logs')
        self.num_run = 0
        self.num_reused = 0
        self._current_log: Optional[str] = None
        self._placeholders: Dict[str, str] = {}

    def abbreviate(self, args: Sequence[str], placeholder: str) -> None:
        """Show these arguments as one placeholder in logged commands.

        Args:
            args (Sequence[str]): Arguments (e.g. the ``--cfg-options``
                pointing a config at the dataset).
            placeholder (str): What the console shows instead of them.
        """
        self._placeholders.update({arg: placeholder for arg in args})

    def _display(self, argv: List[str]) -> str:
        """A tool's command line as the console shows it."""
        shown: List[str] = []
        for arg in argv:
            arg = self._placeholders.get(arg, self._short(arg))
            if not shown or arg != shown[-1]:
                shown.append(arg)
        return ' '.join(shown)

    def path(self, *parts: str) -> str:
        """Return a path under the work dir."""
        return osp.join(self.work_dir, *parts)

    def _record_path(self, name: str) -> str:
        return osp.join(self.record_dir, f'{name}.json')

    def _finished_record(self, name: str, key: str,
                         outputs: Sequence[str]) -> Optional[dict]:
        """Return the record of a stage finished with ``key``, if any."""
        try:
            with open(self._record_path(name)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        if record.get('key') != key or not all(
                osp.exists(path) for path in outputs):
            return None
        return record

    def prepare_dir(self, folder: str, key: str) -> bool:
        """Give a stage a folder that holds only its own earlier attempt.

        Args:
            folder (str): The stage's output folder.
            key (str): The stage's key.

        Returns:
            bool: True if the folder holds an unfinished attempt with the
            same key (which the stage may resume), False if it was (re)made
            empty.
        """
        key_file = osp.join(folder, STAGE_KEY_FILE)
        if osp.isfile(key_file):
            with open(key_file) as f:
                if f.read().strip() == key:
                    return True
        if osp.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        with open(key_file, 'w') as f:
            f.write(key)
        return False

    def run(self, name: str, title: str, params: Dict[str, Any],
            outputs: Sequence[str],
            body: Callable[[str], Dict[str, Any]]) -> StageResult:
        """Run a stage unless it already finished with the same parameters.

        Args:
            name (str): Stage name (file names of its record and log).
            title (str): Header shown on the console.
            params (dict): Everything the stage's result depends on,
                including the keys of the stages it builds on.
            outputs (Sequence[str]): Files the stage must produce.
            body (Callable[[str], dict]): Runs the stage; gets the stage key,
                returns its results.

        Returns:
            StageResult: The stage's key and results.
        """
        key = stage_key(params)
        record = self._finished_record(name, key, outputs)
        if record is not None:
            self.num_reused += 1
            self.logger.info(f'[reused] {title} (finished earlier, see '
                             f'{self._record_path(name)})')
            return StageResult(key, record['results'], reused=True)

        self.num_run += 1
        self._current_log = osp.join(self.log_dir, f'{name}.log')
        os.makedirs(self.log_dir, exist_ok=True)
        if osp.exists(self._current_log):
            os.remove(self._current_log)
        self.logger.info(f'==== {title} ====')
        start = time.perf_counter()
        results = body(key)
        missing = [path for path in outputs if not osp.exists(path)]
        if missing:
            raise StageError(f'stage {name} finished without writing '
                             f'{missing}; see {self._current_log}')
        seconds = time.perf_counter() - start
        atomic_write_json(
            dict(
                key=key,
                params=params,
                outputs=list(outputs),
                results=results,
                seconds=round(seconds, 2)), self._record_path(name))
        self.logger.info(f'     done in {seconds:.0f} s')
        return StageResult(key, results, reused=False)

    def tool(self, script: str, *args: Any) -> None:
        """Run a command-line tool of the repository in this process.

        The command is logged as a user would type it. ``main(argv)`` is
        called when the tool's ``main`` takes ``argv``, otherwise ``main()``
        with ``sys.argv`` set to the command line.

        Args:
            script (str): Path relative to the repository root.
            *args: Command-line arguments.

        Raises:
            StageError: If the tool exits with an error or raises.
        """
        argv = [str(arg) for arg in args]
        log_path = self._current_log or osp.join(self.log_dir, 'tools.log')
        self.logger.info(f'     $ python {script} {self._display(argv)}')
        self.logger.info(f'     (full output: {log_path})')
        module = _load_tool(script)
        takes_argv = 'argv' in inspect.signature(module.main).parameters
        with open(log_path, 'a') as log:
            log.write(f'$ {sys.executable} {script} {" ".join(argv)}\n')
            log.flush()
            output = _ToolOutput(log, self.console, indent=' ' * 7)
            try:
                with contextlib.redirect_stdout(output), \
                        contextlib.redirect_stderr(output), \
                        _patched_argv([script] + argv):
                    if takes_argv:
                        module.main(argv)
                    else:
                        module.main()
            except SystemExit as error:
                if error.code not in (None, 0):
                    raise StageError(
                        f'{script} exited with status {error.code}; see '
                        f'{log_path}') from None
            except Exception as error:
                log.write(traceback.format_exc())
                raise StageError(f'{script} failed ({type(error).__name__}: '
                                 f'{error}); see {log_path}') from error
            finally:
                output.detach()

    def _short(self, arg: str) -> str:
        """Show paths under the repository relative to it."""
        if arg.startswith(REPO_ROOT + os.sep):
            return osp.relpath(arg, REPO_ROOT)
        if '=' in arg:
            key, value = arg.split('=', 1)
            return f'{key}={self._short(value)}'
        return arg

    def log_tail(self, num_lines: int = 30) -> str:
        """Return the last lines of the current stage's log."""
        if self._current_log is None or not osp.isfile(self._current_log):
            return ''
        with open(self._current_log, errors='replace') as f:
            return ''.join(f.readlines()[-num_lines:])
