"""Results files: each benchmark's figures as ``benchmarks/results/NAME.json``.

A record holds where and how the figures were measured and the figures themselves::

    {"name": "node_latency", "title": "...", "machine": "AMD EPYC, 2 cores, ...",
     "torch": "2.13.0+cpu", "python": "3.11.7", "command": "python -m benchmarks...",
     "date": "2026-11-25 16:10 UTC", "commit": "f8f5074",
     "figures": [{"text": "..."}, {"columns": ["config", "ms"], "rows": [["...", "8.6"]]}]}

``command`` is relative to the repository root. ``figures`` are the section's paragraphs
and tables in order; ``render`` turns a record back into the markdown a doc/ page shows.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'benchmarks' / 'results'
_CELL = re.compile(r'(?<!\\)\|')


def commit() -> str:
    done = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else 'unknown'


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL.split(line.strip())[1:-1]]


def parse_figures(markdown: str) -> list[dict]:
    """Paragraphs (``text``) and tables (``columns``, ``rows``) of a markdown body."""
    figures = []
    for block in re.split(r'\n\s*\n', markdown.strip()):
        lines = block.splitlines()
        if lines and all(line.startswith('|') for line in lines) and len(lines) >= 2:
            figures.append({'columns': _cells(lines[0]),
                            'rows': [_cells(line) for line in lines[2:]]})
        elif block.strip():
            figures.append({'text': block.strip()})
    return figures


def record(name: str, markdown: str, commit_id: str | None = None) -> dict:
    """The record of a section as ``reporting.tables.header`` starts it: ``### title``,
    then the machine, command and date lines, then the figures."""
    lines = markdown.strip().splitlines()
    assert lines[0].startswith('### '), f'{name}: the section starts with no ### title'
    meta, body = {}, []
    for i, line in enumerate(lines[1:], 1):
        m = re.match(r'- (machine|command|date): (.*)$', line)
        if m and len(meta) < 3:
            meta[m.group(1)] = m.group(2).strip().strip('`')
        elif line.strip() or meta.keys() >= {'machine', 'command', 'date'}:
            body = lines[i:]
            break
    missing = {'machine', 'command', 'date'} - meta.keys()
    assert not missing, f'{name}: the section has no {", ".join(sorted(missing))} line'
    torch = re.search(r'torch (\S+)', meta['machine'])
    python = re.search(r'Python (\S+)', meta['machine'])
    return {'name': name, 'title': lines[0][4:].strip(), 'machine': meta['machine'],
            'torch': torch.group(1) if torch else '', 'python': python.group(1) if python
            else '', 'command': meta['command'], 'date': meta['date'],
            'commit': commit_id or commit(), 'figures': parse_figures('\n'.join(body))}


def save(rec: dict) -> Path:
    if re.search(r'(^|\s)/\S', rec['command']):
        raise ValueError(f'{rec["name"]}: the command names an absolute path: '
                         f'{rec["command"]!r}; run it from the repository root')
    path = RESULTS / f'{rec["name"]}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1, ensure_ascii=False) + '\n')
    return path


def load(name: str) -> dict:
    return json.loads((RESULTS / f'{name}.json').read_text())


def names() -> list[str]:
    return sorted(p.stem for p in RESULTS.glob('*.json'))


def render(rec: dict) -> str:
    """The markdown of a record: title, where it was measured, its results file, figures."""
    out = [f'### {rec["title"]}', '',
           f'- machine: {rec["machine"]}', f'- command: `{rec["command"]}`',
           f'- date: {rec["date"]}, commit {rec["commit"]}',
           f'- results file: `benchmarks/results/{rec["name"]}.json`', '']
    for fig in rec['figures']:
        if 'text' in fig:
            out += [fig['text'], '']
        else:
            out.append('| ' + ' | '.join(fig['columns']) + ' |')
            out.append('|' + '---|' * len(fig['columns']))
            out += ['| ' + ' | '.join(row) + ' |' for row in fig['rows']]
            out.append('')
    return '\n'.join(out)
