"""Offline training, evaluation and export of ENet for enet_ros."""

import enet_ros  # noqa: F401  first: it sets OpenMP's wait policy before torch loads
