"""Every shell block of the README runs as written, or says why it cannot run here.

Each ```bash block must follow a marker line: ``<!-- README test: run -->`` (run here,
in a temporary folder that sees the repository and ../shared like a checkout does, with
small inputs the test makes) or ``<!-- README test: not run (reason) -->``. A block that
fails, or one without a marker, fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import cv2
import pytest

from conftest import CAMVID, REPO

BLOCK = re.compile(r'(<!-- README test: (run|not run \(.+?\)) -->\n)?```bash\n(.*?)```',
                   re.S)


def blocks() -> list[tuple[str | None, str]]:
    return [(m.group(2), m.group(3)) for m in BLOCK.finditer((REPO / 'README.md').read_text())]


def test_readme_renders_under_commonmark():
    """Parsed as GitHub renders it (CommonMark with tables, markdown-it-py): every code
    fence closes on a fence line of its own, no section heading lands inside a code block,
    and every table row renders as a table."""
    from markdown_it import MarkdownIt
    lines = (REPO / 'README.md').read_text().splitlines()
    tokens = MarkdownIt('commonmark').enable('table').parse('\n'.join(lines))
    fences = [t for t in tokens if t.type == 'fence']
    assert fences, 'no code block parsed'
    for t in fences:
        start, end = t.map
        closing = lines[end - 1].strip() if end <= len(lines) else ''
        assert end - start >= 2 and closing == t.markup, \
            f'the code block opened on line {start + 1} does not close on a fence line ' \
            f'of its own (it runs to line {end}: {closing[:60]!r})'
        headings = [line for line in t.content.splitlines() if re.match(r'#{2,} ', line)]
        assert not headings, f'headings inside the code block of line {start + 1}: {headings}'
    in_table = {i for t in tokens if t.type == 'table_open' for i in range(*t.map)}
    in_code = {i for t in fences for i in range(*t.map)}
    rows = [i + 1 for i, line in enumerate(lines)
            if line.startswith('|') and i not in in_table and i not in in_code]
    assert not rows, f'table rows that do not render as a table, lines {rows}'


def test_every_bash_block_is_marked():
    unmarked = [body.splitlines()[0] for marker, body in blocks() if marker is None]
    assert not unmarked, f'README bash blocks without a README test marker: {unmarked}'
    not_run = [m for m, _ in blocks() if m and m.startswith('not run')]
    print('README blocks not run here:', *not_run, sep='\n  ')


@pytest.fixture(scope='module')
def checkout(tmp_path_factory, camvid_root):
    """A folder laid out like a checkout (links to the repository's parts) beside a
    ``shared`` link, with IMAGES/ and LABELS/ of three CamVid val frames, and MYDATA/: a
    CVAT export (VOC layout, four classes) of 14 CamVid frames at 160x120 whose names
    say their drive, drive1 (0016E5) or drive2 (0006R0)."""
    root = tmp_path_factory.mktemp('readme')
    work = root / 'enet_ros'
    work.mkdir()
    for part in ('.venv', 'scripts', 'enet_ros', 'training', 'benchmarks', 'reporting',
                 'config', 'launch',
                 'requirements', 'runs', 'docs', 'setup.py', 'package.xml', 'README.md'):
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


@pytest.mark.parametrize('index', [i for i, (m, _) in enumerate(blocks()) if m == 'run'])
def test_runnable_block(index, checkout):
    _, body = blocks()[index]
    env = {**os.environ, 'ENET_ROS_CACHE': str(REPO / 'build' / 'test-cache')}
    res = subprocess.run(['bash', '-euo', 'pipefail', '-c', body], cwd=checkout, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f'{body}\n--- exit {res.returncode}\n{res.stdout[-3000:]}' \
                                f'\n{res.stderr[-3000:]}'
