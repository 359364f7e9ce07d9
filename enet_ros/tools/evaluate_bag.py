"""evaluate_bag: evaluate the segmenter offline on a rosbag2 recording (options, output
and exit status: ``tools.bag_evaluation``, or ``evaluate_bag --help``).

This command only starts the evaluation as a session of its own and stays in front of it
(``tools.session``), so it imports nothing heavy itself.
"""

from __future__ import annotations

import sys

from enet_ros.tools.session import run_as_own_session


def main(argv=None) -> int:
    return run_as_own_session('enet_ros.tools.bag_evaluation', argv)


if __name__ == '__main__':
    sys.exit(main())
