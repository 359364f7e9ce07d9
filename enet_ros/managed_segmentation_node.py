"""``python -m enet_ros.managed_segmentation_node``: the node as a ROS 2 lifecycle (managed)
node, as Nav2 and Autoware run perception. Same parameters, topics and behaviour as
``segmentation_node``; loading waits for configure, serving for activate."""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from enet_ros import topics
from enet_ros.segmentation_node import main as node_main, Segmentation, START_ERRORS
from enet_ros.shutdown import LOADING


class ManagedSegmentationNode(Segmentation, LifecycleNode):
    """The managed (lifecycle) node, as Nav2 and Autoware run perception: configure loads
    the weights and compiles, activate subscribes and publishes, deactivate stops without
    freeing, cleanup frees, shutdown ends. Same parameters and topics as the plain node;
    ``autostart`` configures and activates it at start."""

    managed = True

    def __init__(self, **kwargs):
        super().__init__(topics.NODE_NAME, **kwargs)
        self.setup()
        if self.config.autostart:
            self.bring_up()
        else:
            self.get_logger().info(
                f'unconfigured, waiting for configure and activate (a lifecycle manager, or '
                f'ros2 lifecycle set {self.get_fully_qualified_name()} configure)')

    def bring_up(self) -> None:
        """configure, then activate (parameter ``autostart``). A failed step is logged and
        leaves the node where it stopped, so a lifecycle manager or a user can still act."""
        for step, trigger in (('configure', self.trigger_configure),
                              ('activate', self.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                self.get_logger().error(f'autostart: {step} failed' + (
                    '; the node stays unconfigured' if step == 'configure' else ''))
                return
        self.get_logger().info('autostart: configured and active')

    def on_configure(self, state) -> TransitionCallbackReturn:
        loading = LOADING.is_set()  # already set while an autostart runs in main's start-up
        LOADING.set()
        try:
            self.load()
        except START_ERRORS as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        finally:
            if not loading:
                LOADING.clear()
        self.open_outputs()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.serve()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.stop_serving()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.close_outputs()
        self.unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.shutdown()
        if self.cameras:
            self.close_outputs()
        self.unload()
        return TransitionCallbackReturn.SUCCESS


def main(args=None) -> int:
    """The managed node: it starts unconfigured and waits for lifecycle transitions (or,
    with ``autostart``, brings itself up)."""
    return node_main(args, ManagedSegmentationNode)


if __name__ == '__main__':
    sys.exit(main())
