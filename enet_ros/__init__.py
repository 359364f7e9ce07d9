"""enet_ros: ENet semantic segmentation for ROS 2."""
