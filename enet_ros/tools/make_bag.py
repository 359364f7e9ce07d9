"""Write a rosbag2 recording from a folder of images, optionally with a label folder.

    make_bag IMAGES OUTPUT_BAG [--labels DIR] [--rate 10] [--storage mcap|sqlite3]
             [--topic /camera/image] [--label-topic /camera/labels] [--frame-id camera]
             [--encoding rgb8|bgr8|mono8]

Images are sorted by file name and stamped 1/rate apart. Labels (single-channel PNGs of
class ids, same file names as the images) go to the label topic as mono8 with the same
header stamps, which is how ``evaluate_bag --label-topic`` matches them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

import cv2

from enet_ros.bag_io import BagError, BagWriter
from enet_ros.image_codec import IMAGE_FILE_SUFFIXES



def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('images', type=Path, help='folder of images')
    p.add_argument('output', type=Path, help='bag folder to create')
    p.add_argument('--labels', type=Path, help='folder of label PNGs with the same names')
    p.add_argument('--rate', type=float, default=10.0, help='frames per second')
    p.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap',
                   help="mcap (ROS 2 Jazzy's default) or sqlite3")
    p.add_argument('--topic', default='/camera/image')
    p.add_argument('--label-topic', default='/camera/labels')
    p.add_argument('--frame-id', default='camera')
    p.add_argument('--encoding', choices=['rgb8', 'bgr8', 'mono8'], default='rgb8')
    p.add_argument('--limit', type=int, help='first N images only')
    p.add_argument('--start', type=float, help='first stamp, seconds since epoch (default now)')
    return p.parse_args(argv)


def make_bag(args: argparse.Namespace) -> int:
    if not args.images.is_dir():
        raise BagError(f'{args.images} is not a folder; give a folder of images '
                       f'({", ".join(IMAGE_FILE_SUFFIXES)})')
    paths = sorted(p for p in args.images.iterdir()
                   if p.suffix.lower() in IMAGE_FILE_SUFFIXES)[:args.limit]
    if not paths:
        raise BagError(f'no images ({", ".join(IMAGE_FILE_SUFFIXES)}) in {args.images}')
    start = int((args.start if args.start is not None else time.time()) * 1e9)
    step = int(1e9 / args.rate)
    with BagWriter(args.output, args.storage) as bag:
        for i, path in enumerate(paths):
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise BagError(f'cannot read image {path}')
            if args.encoding == 'rgb8':
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            elif args.encoding == 'mono8':
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            stamp = start + i * step
            bag.write(args.topic, bag.image(img, args.encoding, stamp, args.frame_id), stamp)
            if args.labels:
                label_path = args.labels / path.name
                if not label_path.exists():
                    label_path = label_path.with_suffix('.png')
                label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
                if label is None or label.ndim != 2:
                    raise BagError(f'label {label_path} is missing or not single-channel')
                bag.write(args.label_topic, bag.image(label, 'mono8', stamp, args.frame_id),
                          stamp)
    return len(paths)


def main(argv=None) -> int:
    args = get_args(argv)
    try:
        n = make_bag(args)
    except BagError as exc:
        print(f'make_bag: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {n} frames to {args.output} ({args.storage})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
