"""``python -m enet_ros.managed_segmentation_node``: the lifecycle (managed) node."""

import sys

from enet_ros.segmentation_node import main_managed

if __name__ == '__main__':
    sys.exit(main_managed())
