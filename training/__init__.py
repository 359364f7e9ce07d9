"""Offline training, evaluation and export of ENet for enet_ros."""
