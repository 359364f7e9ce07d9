"""How far apart the overlay's colours are, against the dataset's palette.

    python -m benchmarks.palette [--doc]

For CamVid's 11 classes and other class counts: the closest two colours of each palette
in CIELAB (a distance of about 2.3 is the smallest difference a person notices; the
overlay's 50% blend halves every distance).
"""

from __future__ import annotations

import argparse

from reporting.tables import header, publish, table
from enet_ros.colors import closest_pair, distinct_palette
from training.datasets import CAMVID_CLASSES, CAMVID_PALETTE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    rows = []
    for name, colors, names in (
            ("CamVid's palette (colour mask)", CAMVID_PALETTE, CAMVID_CLASSES),
            ('overlay, 11 classes (CamVid)', distinct_palette(11), CAMVID_CLASSES),
            *((f'overlay, {n} classes', distinct_palette(n), None) for n in (4, 20, 32))):
        d, i, j = closest_pair(colors)
        pair = f'{names[i]} / {names[j]}' if names else f'class {i} / class {j}'
        rows.append([name, f'{d:.1f}', pair])
    md = header('Overlay colours: the closest two classes')
    md += ('\nCIELAB distance between the two closest colours of each palette (larger is '
           'easier to tell apart; the 50% blend of the overlay halves it). The overlay '
           'takes `enet_ros.colors.distinct_palette`; the colour mask keeps the '
           "weights' palette.\n\n")
    md += table(['palette', 'closest distance', 'closest pair'], rows)
    publish('palette', md, args.doc)


if __name__ == '__main__':
    main()
