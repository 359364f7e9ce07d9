"""Shared by the benchmark scripts: a header naming machine, command and date, markdown
tables, and ``publish``: the results file of each script and the doc/ section it owns.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
import sys
import time

import torch

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__} '
            f'({torch.get_num_threads()} threads), Python {platform.python_version()}')


def command() -> str:
    """This process's command line as run from the repository (``python -m`` for modules),
    with paths inside the repository relative to it."""
    script = Path(sys.argv[0]).resolve()
    try:
        name = 'python -m ' + '.'.join(script.relative_to(REPO).with_suffix('').parts)
    except ValueError:
        name = Path(sys.argv[0]).name
    return ' '.join([name] + [os.path.relpath(a, REPO) if os.path.isabs(a) and
                              Path(a).resolve().is_relative_to(REPO) else a
                              for a in sys.argv[1:]])


def header(title: str) -> str:
    return (f'### {title}\n\n'
            f'- machine: {machine()}\n'
            f'- command: `{command()}`\n'
            f'- date: {time.strftime("%Y-%m-%d %H:%M %Z")}\n')


def table(columns: list[str], rows: list[list]) -> str:
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def publish(name: str, markdown: str, doc: bool) -> None:
    """Print the section, save it as benchmarks/results/NAME.json (``results.record``) and,
    with ``doc``, render it into the doc/ page that shows it."""
    from reporting import results
    print(markdown, flush=True)
    results.save(results.record(name, markdown))
    if doc:
        from reporting import pages
        print(f'updated {pages.render_results(name)}')
