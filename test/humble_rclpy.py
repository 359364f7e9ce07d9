"""Stand-in for the node on ROS 2 Humble's rclpy, whose executor calls every subscription
callback with the message alone and has no ``Subscription.CallbackType``: run as
``python -m humble_rclpy --ros-args ...`` (the node's own arguments)."""

from rclpy.subscription import Subscription

import enet_ros.camera_stream as stream_module
import enet_ros.segmentation_node as node_module


def _message_only(self, value) -> None:  # Humble: the message alone, whatever the signature
    self._callback = value
    self._callback_type = Subscription.CallbackType.MessageOnly


Subscription.callback = Subscription.callback.setter(_message_only)
stream_module.MESSAGE_INFO = False  # what the node sees on Humble: no CallbackType

if __name__ == '__main__':
    raise SystemExit(node_module.main())
