"""README.md and doc/: every code block runs as written or says why not, links and anchors
resolve, generated sections equal their rendering, rosdoc2 builds them without a warning
about them, and codespell finds no misspelling.

Each code block follows a marker line ``<!-- docs test: KIND -->``:
- ``run``: a bash block run here, in a temporary folder that sees the repository and
  ../shared like a checkout does, with small inputs the test makes (IMAGES/, LABELS/,
  MYDATA/);
- ``ros2 session``: the README's and then the pages' such blocks, in the order a reader
  meets them (README, then doc/index's toctree), run in one bash shell as a user types
  them, beside a test camera on /camera/image_raw: each ``ros2 launch`` runs in the
  background until the node listens (the next launch stops it first, with Ctrl-C, and
  its exit status must be 0), ``ros2 topic hz`` runs for a few seconds and must report a
  rate, and ``rosdep install`` is replaced by test_package's offline key check;
- ``params file``: a YAML parameters file whose keys must be node parameters;
- ``not run (reason)``.
MyST directives (a fence whose info string starts with ``{``) are not code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import cv2
import pytest
import yaml

from conftest import CAMVID, REPO, ros_tool

DOC = REPO / 'doc'
PAGES = [REPO / 'README.md'] + sorted(DOC.rglob('*.md'))
MARKER = re.compile(r'<!-- docs test: (run|ros2 session|params file|not run) ?(\(.+\))? -->$')
# what a page may name as a machine's own folder (the checkout, a home, a temporary folder)
MACHINE_PATH = re.compile(r'(?<![\w.~$])/(work|root|home|tmp|Users|mnt)/')


def rel(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def fences(page: Path) -> list[tuple[str | None, str, str, int]]:
    """(marker kind, info string, body, first line) of every code block of a page."""
    from markdown_it import MarkdownIt
    lines = page.read_text().splitlines()
    out = []
    for t in MarkdownIt('commonmark').enable('table').parse('\n'.join(lines)):
        if t.type != 'fence' or t.info.startswith('{'):
            continue
        start = t.map[0]
        m = MARKER.match(lines[start - 1].strip()) if start else None
        kind = None if m is None else m.group(1)
        if kind == 'not run' and not m.group(2):
            kind = None  # a reason is required
        out.append((kind, t.info.strip(), t.content, start + 1))
    return out


def toctree_order() -> list[Path]:
    """The doc pages in the order doc/index's toctrees list them."""
    text = (DOC / 'index.md').read_text()
    names = []
    for block in re.findall(r'```\{toctree\}\n(.*?)```', text, re.S):
        names += [line.strip() for line in block.splitlines()
                  if line.strip() and not line.startswith(':')]
    return [DOC / f'{name}.md' for name in names]


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_page_renders_under_commonmark(page):
    """Parsed as GitHub renders it (CommonMark with tables, markdown-it-py): every code
    fence closes on a fence line of its own, no heading lands inside a code block, and
    every table row renders as a table."""
    from markdown_it import MarkdownIt
    lines = page.read_text().splitlines()
    tokens = MarkdownIt('commonmark').enable('table').parse('\n'.join(lines))
    for t in (t for t in tokens if t.type == 'fence'):
        start, end = t.map
        closing = lines[end - 1].strip() if end <= len(lines) else ''
        assert end - start >= 2 and closing == t.markup, \
            f'{rel(page)}: the code block of line {start + 1} does not close on a fence ' \
            f'line of its own (it runs to line {end}: {closing[:60]!r})'
        headings = [line for line in t.content.splitlines() if re.match(r'#{2,} ', line)]
        assert not headings, f'{rel(page)}: headings inside the code block of line ' \
                             f'{start + 1}: {headings}'
    in_table = {i for t in tokens if t.type == 'table_open' for i in range(*t.map)}
    in_code = {i for t in tokens if t.type == 'fence' for i in range(*t.map)}
    rows = [i + 1 for i, line in enumerate(lines)
            if line.startswith('|') and i not in in_table and i not in in_code]
    assert not rows, f'{rel(page)}: table rows that do not render as a table, lines {rows}'


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_every_code_block_is_marked(page):
    unmarked = [f'line {line}' for kind, _, _, line in fences(page) if kind is None]
    assert not unmarked, f'{rel(page)}: code blocks without a docs test marker (or a ' \
                         f'"not run" without its reason): {unmarked}'


def test_readme_is_short_with_picture_commands_and_links():
    text = (REPO / 'README.md').read_text()
    assert len(text.splitlines()) <= 200
    assert '](doc/images/' in text and (DOC / 'images' / 'overlay.jpg').is_file()
    assert 'bash scripts/run.sh demo' in text and 'bash scripts/run.sh test' in text
    assert 'colcon build --packages-select enet_ros' in text
    assert 'ros2 launch enet_ros segmentation.launch.py image:=' in text
    linked = set(re.findall(r'\]\(doc/(\w+)\.md', text))
    assert linked >= {p.stem for p in toctree_order()}, 'README links no page for some tasks'


def test_every_doc_page_is_in_the_index_toctree():
    listed = toctree_order()
    assert all(p.is_file() for p in listed), [rel(p) for p in listed if not p.is_file()]
    pages = set(DOC.rglob('*.md')) - {DOC / 'index.md'}
    assert pages == set(listed), f'pages in no toctree: {sorted(map(rel, pages - set(listed)))}'


def slug(heading: str) -> str:
    """GitHub's anchor of a heading (as MyST's heading anchors make them too)."""
    text = re.sub(r'[`*_]|\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page: Path) -> set[str]:
    from markdown_it import MarkdownIt
    tokens = MarkdownIt('commonmark').parse(page.read_text())
    return {slug(tokens[i + 1].content) for i, t in enumerate(tokens)
            if t.type == 'heading_open'}


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_relative_links_and_anchors_resolve(page):
    text = page.read_text()
    text = re.sub(r'```.*?```', '', text, flags=re.S)  # links in code are not links
    broken = []
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f'{target}: no such file')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            broken.append(f'{target}: no heading with that anchor')
    assert not broken, f'{rel(page)}: {broken}'


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_no_path_of_a_machine(page):
    found = [m.group(0) for m in MACHINE_PATH.finditer(page.read_text())]
    assert not found, f'{rel(page)} names folders of a machine: {found}'


def test_generated_sections_equal_their_rendering():
    """The node reference (parameters, launch arguments) equals what the code's tables
    render, and each results table what its results file renders: `python -m
    reporting.pages` after a change, never a hand edit."""
    from reporting import pages
    stale = [f'{rel(page)}: {name}' for page in pages.pages()
             for name, body in pages.sections(page.read_text()).items()
             if body != pages.rendering(name)]
    assert not stale, f'generated sections that differ from their rendering: {stale}'


def test_every_results_file_has_one_table_and_every_table_a_results_file():
    from reporting import pages, results
    shown = [name for page in pages.pages() for name in pages.sections(page.read_text())
             if name not in pages.REFERENCE]
    assert sorted(shown) == sorted(set(shown)), 'a results table shown twice'
    assert set(shown) == set(results.names()), \
        f'results files with no table: {sorted(set(results.names()) - set(shown))}; ' \
        f'tables with no results file: {sorted(set(shown) - set(results.names()))}'
    for name in results.names():
        rec = results.load(name)
        assert {'machine', 'torch', 'python', 'command', 'date', 'commit', 'figures'} <= \
            rec.keys(), name
        assert not re.search(r'(^|\s)/\S', rec['command']), \
            f'{name}: the command names an absolute path: {rec["command"]}'


def test_node_reference_lists_every_parameter_and_launch_argument():
    from enet_ros.launch_args import ARGUMENTS, LAUNCH_PARAMETERS
    from enet_ros.parameters import PARAMETERS
    from reporting import pages
    sections = pages.sections((DOC / 'node.md').read_text())
    for p in PARAMETERS:
        assert f'| `{p.name}` |' in sections['parameters'], p.name
    for name in list(ARGUMENTS) + list(LAUNCH_PARAMETERS):
        assert f'| `{name}` |' in sections['launch_arguments'], name


def test_params_file_blocks_name_node_parameters():
    from enet_ros.parameters import PARAMETERS
    blocks = [(page, body) for page in PAGES for kind, _, body, _ in fences(page)
              if kind == 'params file']
    assert blocks, 'no example parameters file'
    for page, body in blocks:
        values = yaml.safe_load(body)['/**']['ros__parameters']
        unknown = set(values) - {p.name for p in PARAMETERS}
        assert not unknown, f'{rel(page)}: not node parameters: {unknown}'


# -- running the blocks --------------------------------------------------------------

def runnable() -> list[tuple[Path, int, str]]:
    return [(page, line, body) for page in PAGES for kind, info, body, line in fences(page)
            if kind == 'run']


@pytest.fixture(scope='module')
def checkout(tmp_path_factory, camvid_root):
    """A folder laid out like a checkout (links to the repository's parts) beside a
    ``shared`` link, with IMAGES/ and LABELS/ of three CamVid val frames, and MYDATA/: a
    CVAT export (VOC layout, four classes) of 14 CamVid frames at 160x120 whose names
    say their drive, drive1 (0016E5) or drive2 (0006R0)."""
    root = tmp_path_factory.mktemp('checkout')
    work = root / 'enet_ros'
    work.mkdir()
    for part in ('.venv', 'scripts', 'enet_ros', 'training', 'benchmarks', 'reporting',
                 'config', 'launch', 'requirements', 'runs', 'doc', 'setup.py',
                 'package.xml', 'README.md'):
        (work / part).symlink_to(REPO / part)
    (root / 'shared').mkdir()
    (root / 'shared' / 'data').symlink_to(CAMVID.parent)
    names = sorted(p.name for p in (camvid_root / 'val').glob('*.png'))[:3]
    for sub, src in (('IMAGES', 'val'), ('LABELS', 'valannot')):
        (work / sub).mkdir()
        for n in names:
            shutil.copy(camvid_root / src / n, work / sub / n)
    own_export(camvid_root, work / 'MYDATA')
    return work


def own_export(camvid_root, out):
    from benchmarks.camvid_voc import camvid_stems, evenly, write_voc
    stems = evenly(camvid_stems(camvid_root, '0016E5'), 10) + \
        camvid_stems(camvid_root, '0006R0')[:4]
    write_voc(camvid_root, out, {'train': stems})
    renamed = []
    for stem in stems:
        new = stem.replace('0016E5', 'drive1').replace('0006R0', 'drive2')
        renamed.append(new)
        for sub, ext, interp in (('JPEGImages', '.jpg', cv2.INTER_AREA),
                                 ('SegmentationClass', '.png', cv2.INTER_NEAREST)):
            src = out / sub / f'{stem}{ext}'
            cv2.imwrite(str(out / sub / f'{new}{ext}'),
                        cv2.resize(cv2.imread(str(src)), (160, 120), interpolation=interp))
            src.unlink()
    (out / 'ImageSets' / 'Segmentation' / 'train.txt').write_text('\n'.join(renamed) + '\n')


@pytest.mark.parametrize('page,line,body', runnable(),
                         ids=[f'{rel(p)}:{line}' for p, line, _ in runnable()])
def test_runnable_block(page, line, body, checkout):
    assert fences(page)  # the block is still there
    env = {**os.environ, 'ENET_ROS_CACHE': str(REPO / 'build' / 'test-cache')}
    res = subprocess.run(['bash', '-euo', 'pipefail', '-c', body], cwd=checkout, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f'{rel(page)}:{line}\n{body}\n--- exit {res.returncode}\n' \
                                f'{res.stdout[-3000:]}\n{res.stderr[-3000:]}'


# the shell a ros2 session runs in: the user's commands, with a launch kept in the
# background and stopped by the next one, and commands that run until Ctrl-C bounded
SESSION_PRELUDE = r"""
set -eo pipefail
set -m  # job control: a job in the background takes Ctrl-C (SIGINT), as a terminal's does
launched=
stop_launch() {
  [ -n "$launched" ] || return 0
  kill -INT "$launched"
  for _ in $(seq 60); do kill -0 "$launched" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$launched" 2>/dev/null; then
    echo "docs test: the launch ignored Ctrl-C for 30 s"
    kill -KILL "$launched"
  fi
  local rc=0; wait "$launched" || rc=$?
  launched=
  echo "docs test: the launch ended with exit code $rc"
  [ "$rc" = 0 ] || { tail -40 "$LOGS/launch.log"; return 1; }
}
rosdep() {  # its index is online; test_package checks package.xml's keys offline
  echo "docs test: rosdep $1 not run"
}
ros2() {
  case "$1" in
    launch)
      case " $* " in *" --show-args "*) command ros2 "$@"; return;; esac
      stop_launch
      command ros2 "$@" > "$LOGS/launch.log" 2>&1 &
      launched=$!
      for _ in $(seq 600); do
        # then a few seconds for discovery, as a user takes to reach the other terminal
        grep -q 'listening on\|waiting for configure' "$LOGS/launch.log" && { sleep 3; return 0; }
        kill -0 "$launched" 2>/dev/null || { cat "$LOGS/launch.log"; return 1; }
        sleep 0.5
      done
      echo "docs test: the launched node did not listen within 300 s"; cat "$LOGS/launch.log"
      return 1 ;;
    topic)
      if [ "$2" = hz ]; then
        local rc=0
        timeout -s INT 8 ros2 "$@" > "$LOGS/hz.log" 2>&1 || rc=$?
        cat "$LOGS/hz.log"
        grep -q 'average rate' "$LOGS/hz.log" && return 0
        echo "docs test: hz measured no rate (exit $rc)"
        return 1
      fi
      timeout 60 ros2 "$@" ;;  # echo --once: a message within a minute
    *)
      # param and lifecycle look the node up in the daemon's graph first ("Node not
      # found" when it has not seen it yet, as on a loaded machine): a user types it again
      local out rc
      for try in 1 2 3; do
        rc=0; out=$(timeout 120 ros2 "$@" 2>&1) || rc=$?
        [ "$out" = 'Node not found' ] || break
        echo "docs test: ros2 $1 $2: Node not found (try $try of 3)"; sleep 3
      done
      printf '%s\n' "$out"; return "$rc" ;;
  esac
}
trap '[ -z "$launched" ] || kill -INT "$launched"; kill "$CAMERA" 2>/dev/null || true
      command ros2 daemon stop > /dev/null 2>&1 || true' EXIT
# the ros2 command line's graph daemon, running from the start as on a user's machine
command ros2 daemon start
python "$TESTS/launch/camera.py" /camera/image_raw 10 camera > "$LOGS/camera.log" 2>&1 &
CAMERA=$!
"""
SESSION_END = r"""
stop_launch
test -f "$FASTRTPS_DEFAULT_PROFILES_FILE" && test -f "$FASTDDS_DEFAULT_PROFILES_FILE"
echo "docs test: session done"
"""


def ros2_session() -> list[tuple[Path, int, str]]:
    order = [REPO / 'README.md'] + toctree_order()
    return [(page, line, body) for page in order for kind, _, body, line in fences(page)
            if kind == 'ros2 session']


def test_ros2_session(tmp_path):
    """The README's and the pages' ROS 2 blocks, in one shell as a user runs them: build
    in a colcon workspace under a fresh home, ``ros2 launch`` on the camera, watch and
    steer it with ``ros2 topic``, ``ros2 param`` and ``ros2 lifecycle``."""
    ros_tool('ros2')
    blocks = ros2_session()
    script = SESSION_PRELUDE + '\n'.join(
        f'echo "docs test: {rel(page)}:{line}"\n{body}' for page, line, body in blocks) + \
        SESSION_END
    (tmp_path / 'home').mkdir()
    (tmp_path / 'logs').mkdir()
    env = {**os.environ, 'HOME': str(tmp_path / 'home'), 'LOGS': str(tmp_path / 'logs'),
           'TESTS': str(REPO / 'test'), 'ENET_ROS_CACHE': str(REPO / 'build' / 'test-cache'),
           'PATH': os.pathsep.join([str(Path(sys.executable).parent), os.environ['PATH']]),
           'PYTHONPATH': str(REPO)}
    res = subprocess.run(['bash', '-c', script], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and 'docs test: session done' in out, \
        f'--- exit {res.returncode}\n{out[-8000:]}'
    # what the user would have seen
    assert re.search(r'average rate: ([0-9.]+)', out), out[-3000:]
    assert 'frame_id: camera' in out, 'ros2 topic echo --once printed no mask header'
    assert 'Set parameter successful' in out
    assert re.search(r'^active \[3\]$', out, re.M), 'ros2 lifecycle get never said active'
    assert out.count('the launch ended with exit code 0') == 2


# -- building and spelling -----------------------------------------------------------

def docs_tool(name: str) -> str:
    tool = REPO / '.venv-docs' / 'bin' / name
    if not tool.exists():
        why = f'{tool} missing: bash scripts/setup_docs.sh makes it (scripts/run.sh test does)'
        if os.environ.get('CI'):
            pytest.fail(why)
        pytest.skip(why)
    return str(tool)


# rosdoc2 includes README.md alone (standard_docs/original/), where its links into doc/,
# which GitHub follows and test_relative_links_and_anchors_resolve checks, lead nowhere
README_IN_ROSDOC2 = re.compile(r"README\.md:\d+: WARNING: ('myst' cross-reference target not "
                               r"found: 'doc/|image file not readable: (standard_docs/"
                               r"(original/)?)?doc/images/)")


def test_rosdoc2_builds_the_pages_without_a_warning(tmp_path):
    rosdoc2 = docs_tool('rosdoc2')
    env = {**os.environ, 'PATH': os.pathsep.join([str(Path(rosdoc2).parent),
                                                  os.environ['PATH']])}
    res = subprocess.run([rosdoc2, 'build', '--package-path', str(REPO)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    warnings = [line for line in out.splitlines() if 'WARNING' in line or 'ERROR' in line]
    ours = [w for w in warnings if not README_IN_ROSDOC2.search(w)]
    assert not ours, '\n'.join(ours)
    site = tmp_path / 'docs_output' / 'enet_ros'
    for page in ('user_docs/node.html', 'user_docs/getting_started.html',
                 'enet_ros.segmenter.html'):
        assert (site / page).is_file(), page
    assert 'input_width' in (site / 'user_docs' / 'node.html').read_text()


def test_spelling():
    """codespell's common, rare and code misspellings; test/codespell_words.txt holds the
    project's own words it would flag (ws: a colcon workspace, arange: torch.arange, ro: a
    read-only mount, warmup, hist)."""
    codespell = docs_tool('codespell')
    words = REPO / 'test' / 'codespell_words.txt'
    res = subprocess.run([codespell, '--builtin', 'clear,rare,code', '--ignore-words', str(words),
                          'README.md', 'ARCHITECTURE.md', 'doc', 'enet_ros', 'training',
                          'benchmarks', 'reporting', 'test', 'scripts', 'launch', 'config',
                          '--skip', '*.csv,*.png,*.jpg,*.pt,*.onnx,rosdep_keys.txt'],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_results_files_are_json_with_their_command(tmp_path):
    """A benchmark's publish writes the results file a page renders (and refuses an
    absolute path as its command)."""
    from reporting import results
    md = ('### A table\n\n- machine: X, 2 cores, torch 2.13.0+cpu (2 threads), Python 3.11.7\n'
          '- command: `python -m benchmarks.x --runs 3`\n- date: 2026-12-04 20:00 UTC\n\n'
          'Some words.\n\n| a | b |\n|---|---|\n| 1 | 2 \\| 3 |\n')
    rec = results.record('x', md, 'abc1234')
    assert rec['torch'] == '2.13.0+cpu' and rec['python'] == '3.11.7'
    assert rec['figures'] == [{'text': 'Some words.'},
                              {'columns': ['a', 'b'], 'rows': [['1', '2 \\| 3']]}]
    assert json.loads(json.dumps(rec)) == rec
    assert '| 1 | 2 \\| 3 |' in results.render(rec)
    with pytest.raises(ValueError, match='absolute path'):
        results.save({**rec, 'command': 'python /home/me/benchmarks/x.py'})
