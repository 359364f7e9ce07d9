"""The import graph drawn in ARCHITECTURE.md holds for the whole tree: no import runs back
up a layer of the installed package, no loop between folders, the node module stays a thin
shell."""

from __future__ import annotations

import ast
import re

from conftest import REPO

FOLDERS = {'enet_ros': set(), 'reporting': {'enet_ros'}, 'training': {'enet_ros', 'reporting'},
           'benchmarks': {'enet_ros', 'training', 'reporting'}}


def modules() -> dict[str, object]:
    found = {}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob('*.py'):
            name = '.'.join(path.relative_to(REPO).with_suffix('').parts)
            found[name.removesuffix('.__init__')] = path
    return found


def imports(path, known) -> set[str]:
    """The tree's modules that ``path`` imports (anywhere in it, functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f'{node.module}.{alias.name}'
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known}


def layers() -> dict[str, tuple[int, int]]:
    """enet_ros module -> (layer, position in its row), from ARCHITECTURE.md's table."""
    text = (REPO / 'ARCHITECTURE.md').read_text()
    rows = re.findall(r'^\| (\d) [^|]+ \| (.+) \|$', text, re.M)
    assert rows, 'ARCHITECTURE.md has no layer table'
    return {f'enet_ros.{m}': (int(layer), k) for layer, names in rows
            for k, m in enumerate(re.findall(r'`([\w.]+)`', names))}


def test_every_import_goes_down_a_layer_and_no_folder_loops():
    known, table = modules(), layers()
    packages = {m for m in known if known[m].name == '__init__.py'}
    listed = {m for m in known if m.startswith('enet_ros.') and m not in packages}
    assert listed == set(table), ('modules missing from / extra in the layer table: '
                                  f'{sorted(listed ^ set(table))}')
    wrong = []
    for name, path in known.items():
        folder = name.split('.')[0]
        for target in imports(path, known) - packages - {name}:
            other = target.split('.')[0]
            if other != folder and other not in FOLDERS[folder]:
                wrong.append(f'{name} -> {target} (folder {folder} may not import {other})')
            elif folder == other == 'enet_ros' and name in table and \
                    table[target] >= table[name]:
                wrong.append(f'{name} -> {target} (layer {table[name]} -> {table[target]})')
    assert not wrong, '\n'.join(wrong)


def test_the_node_module_is_a_thin_shell():
    path = REPO / 'enet_ros' / 'segmentation_node.py'
    assert len(path.read_text().splitlines()) <= 300
    bad = {m for m in imports(path, modules())
           if m == 'enet_ros.bag_io' or m.startswith('enet_ros.tools')}
    assert not bad, bad


def test_installed_modules_have_no_import_time_side_effects():
    """No module of the installed package changes warnings filters, the environment or
    another library's attributes when imported (only inside functions it runs)."""
    offenders = []
    for name, path in modules().items():
        if not name.startswith('enet_ros'):
            continue
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            code = ast.unparse(node)
            if re.search(r'warnings\.(filterwarnings|simplefilter)|os\.environ\[|'
                         r'os\.environ\.(update|setdefault)|^np\.\w+ = ', code):
                offenders.append(f'{name}: {code.splitlines()[0]}')
    assert not offenders, offenders


def test_private_torch_interfaces_only_in_torch_private():
    """Every private torch attribute the installed package touches (``torch._x``,
    ``layer._conv_forward``...) is behind one function of ``torch_private``."""
    private = re.compile(r'\btorch\.(?:\w+\.)*_[a-z]\w*|\._conv_forward\b|_is_mkldnn')
    found = [f'{path.relative_to(REPO)}:{k}: {line.strip()}'
             for path in (REPO / 'enet_ros').rglob('*.py') if path.name != 'torch_private.py'
             for k, line in enumerate(path.read_text().splitlines(), 1)
             if private.search(line.split('#')[0])]
    assert not found, '\n'.join(found)
