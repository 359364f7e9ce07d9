"""The generated sections of doc/ pages, each between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->``: every results file's table (``reporting.results``) where a page
shows it, and the node reference (parameters, launch arguments) from the tables the node
and the launch file use. ``python -m reporting.pages`` renders them all; a test checks
that every page equals its rendering.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from reporting import results

DOC = Path(__file__).resolve().parents[1] / 'doc'
REFERENCE = ('parameters', 'launch_arguments')
_SECTION = re.compile(r'<!-- (\w+):begin -->\n(.*?)<!-- \1:end -->', re.S)


def sections(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _SECTION.finditer(text)}


def pages() -> list[Path]:
    return sorted(DOC.rglob('*.md'))


def _kind(p) -> str:
    if p.name == 'palette':  # declared from the weights: r, g, b per class
        return 'int[]'
    return {bool: 'bool', int: 'int', float: 'double', str: 'string',
            list: 'string[]'}[type(p.default)]


def parameters() -> str:
    from enet_ros.parameters import PARAMETERS
    rows = []
    for p in PARAMETERS:
        default = '(from the weights)' if p.from_model else f'`{json.dumps(p.default)}`'
        allowed = (', '.join(p.choices) if p.choices else
                   f'{p.float_range[0]} to {p.float_range[1]}' if p.float_range else
                   f'{p.int_range[0]} to {p.int_range[1]}' if p.int_range else '')
        rows.append([f'`{p.name}`', _kind(p), default, allowed,
                     'restart' if p.read_only else 'live', p.description])
    return _table(['parameter', 'type', 'default', 'range or choices', 'change',
                   'description'], rows)


def launch_arguments() -> str:
    from enet_ros.dds import PACKAGE_ROOT
    from enet_ros.launch_args import ARGUMENTS, description, LAUNCH_PARAMETERS
    rows = []
    for name, (default, text) in ARGUMENTS.items():
        if default.startswith(str(PACKAGE_ROOT)):  # the package's share folder, here
            default = '<share>/' + Path(default).relative_to(PACKAGE_ROOT).as_posix()
        rows.append([f'`{name}`', f'`{default}`' if default else '(empty)', text])
    rows += [[f'`{name}`', '(empty)', description(name)] for name in LAUNCH_PARAMETERS]
    return _table(['argument', 'default', 'description'], rows) + (
        "\n`<share>` is the package's share folder, `$(ros2 pkg prefix enet_ros)/share/"
        'enet_ros` where it is installed.\n')


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    def cell(text: str) -> str:  # <ns> is text, not an HTML tag
        return text if text.startswith('`') else text.replace('<', '&lt;').replace('>', '&gt;')
    return '\n'.join(lines + ['| ' + ' | '.join(cell(c) for c in r) + ' |'
                              for r in rows]) + '\n'


def rendering(name: str) -> str:
    if name in REFERENCE:
        return globals()[name]()
    return results.render(results.load(name))


def _replace(text: str) -> str:
    return _SECTION.sub(lambda m: f'<!-- {m.group(1)}:begin -->\n{rendering(m.group(1))}'
                        f'<!-- {m.group(1)}:end -->', text)


def render_results(name: str) -> Path:
    """Render the section ``name`` in the page that shows it; returns that page."""
    for page in pages():
        text = page.read_text()
        if name in sections(text):
            page.write_text(_replace(text))
            return page
    raise SystemExit(f'no doc/ page has a <!-- {name}:begin --> section: add one where '
                     'the table belongs')


def main() -> None:
    for page in pages():
        text = page.read_text()
        if sections(text):
            page.write_text(_replace(text))
            print(f'rendered {page.relative_to(DOC.parent)}')


if __name__ == '__main__':
    main()
