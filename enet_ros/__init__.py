"""enet_ros: ENet semantic segmentation for ROS 2."""

from enet_ros import threads

# before anything imports torch: its OpenMP runtime reads how threads wait once, as it loads
threads.set_wait_policy()
