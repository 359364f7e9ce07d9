"""Start the ENet segmentation node: ros2 launch enet_ros segmentation.launch.py.

Launch arguments that set node parameters override the params file only when given
(``enet_ros.launch_args``); everything else comes from ``params_file``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from enet_ros.launch_args import description, LAUNCH_PARAMETERS, overrides


def node_action(context):
    given = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_PARAMETERS}
    image = LaunchConfiguration('image').perform(context)
    return [Node(
        package='enet_ros',
        executable='segmentation_node',
        name='enet_segmentation',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'),
                    overrides(given, LaunchConfiguration('use_sim_time').perform(context))],
        remappings=[('image', image), ('image/compressed', image + '/compressed'),
                    ('camera_info', LaunchConfiguration('camera_info'))],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )]


def generate_launch_description():
    share = get_package_share_directory('enet_ros')
    args = [
        DeclareLaunchArgument('image', default_value='image',
                              description="Input image topic (remapped onto the node's image)"),
        DeclareLaunchArgument('camera_info', default_value='camera_info',
                              description='Camera info topic beside the image'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace for the node and its topics'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'segmentation.yaml'),
                              description='Parameters file for the node'),
        DeclareLaunchArgument('use_sim_time', default_value='',
                              description='true: follow /clock (bag replay, simulation). '
                                          'Empty: the params file decides.'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Logging level: debug, info, warn, error'),
        DeclareLaunchArgument('use_rviz', default_value='false',
                              description='Also start rviz2 with config/segmentation.rviz'),
    ] + [DeclareLaunchArgument(name, default_value='', description=description(name))
         for name in LAUNCH_PARAMETERS]
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2',
        namespace=LaunchConfiguration('namespace'),
        arguments=['-d', os.path.join(share, 'config', 'segmentation.rviz')],
        remappings=[('/image', 'image'), ('/segmentation/overlay', 'segmentation/overlay'),
                    ('/segmentation/color_mask', 'segmentation/color_mask')],
        condition=IfCondition(LaunchConfiguration('use_rviz')),
    )
    return LaunchDescription(args + [OpaqueFunction(function=node_action), rviz])
