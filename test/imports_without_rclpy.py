"""Run by test_core: the core, the metrics, the camera stats, the frame pipeline, the
parameters, the topics and training import with rclpy blocked (exits non-zero otherwise)."""

import sys

sys.modules['rclpy'] = None  # any import of rclpy now raises

import enet_ros.camera_stats  # noqa: E402,F401
import enet_ros.checkpoint  # noqa: E402,F401
import enet_ros.image_codec  # noqa: E402,F401
import enet_ros.metrics  # noqa: E402,F401
import enet_ros.model  # noqa: E402,F401
import enet_ros.parameters  # noqa: E402,F401
import enet_ros.pipeline  # noqa: E402,F401
import enet_ros.segmenter  # noqa: E402,F401
import enet_ros.topics  # noqa: E402,F401
import enet_ros.watch  # noqa: E402,F401
import training.evaluate  # noqa: E402,F401
import training.train  # noqa: E402,F401

loaded = [m for m in sys.modules if m.startswith('rclpy') and sys.modules[m] is not None]
assert not loaded, loaded
