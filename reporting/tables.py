"""Shared by the benchmark scripts: a header naming machine, command and date, and the
README section each script owns (between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``).
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
    """This process's command line as run from the repository (``python -m`` for modules)."""
    script = Path(sys.argv[0]).resolve()
    try:
        name = 'python -m ' + '.'.join(script.relative_to(REPO).with_suffix('').parts)
    except ValueError:
        name = sys.argv[0]
    return ' '.join([name] + sys.argv[1:])


def header(title: str) -> str:
    return (f'### {title}\n\n'
            f'- machine: {machine()}\n'
            f'- command: `{command()}`\n'
            f'- date: {time.strftime("%Y-%m-%d %H:%M %Z")}\n')


def table(columns: list[str], rows: list[list]) -> str:
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def publish(name: str, markdown: str, readme: bool) -> None:
    """Print, save under benchmarks/results/NAME.md and optionally replace the README section."""
    print(markdown, flush=True)
    out = REPO / 'benchmarks' / 'results' / f'{name}.md'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    if readme:
        path = REPO / 'README.md'
        text = path.read_text()
        begin, end = f'<!-- {name}:begin -->', f'<!-- {name}:end -->'
        if begin not in text or end not in text:
            raise SystemExit(f'README.md has no {begin} ... {end} section')
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(f'{head}{begin}\n{markdown}\n{end}{tail}')
        print(f'updated README.md section {name}')
