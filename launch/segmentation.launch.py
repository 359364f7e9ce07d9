"""Start the ENet segmentation node: ros2 launch enet_ros segmentation.launch.py.

What to start comes from ``enet_ros.launch_args.node_spec`` (tested without ``launch``):
launch arguments that set node parameters override the params file only when given;
``managed:=true`` starts the lifecycle node, which ``autostart:=true`` (the default)
configures and activates by itself; ``dds_profile`` sets the FastDDS profile for the node.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from enet_ros.launch_args import (ARGUMENTS, description, LAUNCH_PARAMETERS, node_spec,
                                  rviz_remappings)


def node_action(context):
    names = list(ARGUMENTS) + list(LAUNCH_PARAMETERS)
    spec = node_spec({name: LaunchConfiguration(name).perform(context) for name in names})
    return [Node(
        package='enet_ros',
        executable=spec['executable'],
        name='enet_segmentation',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), spec['parameters']],
        remappings=spec['remappings'],
        additional_env=spec['env'],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )]


def generate_launch_description():
    share = get_package_share_directory('enet_ros')
    args = [DeclareLaunchArgument(name, default_value=default, description=text)
            for name, (default, text) in ARGUMENTS.items()
            ] + [DeclareLaunchArgument(name, default_value='', description=description(name))
                 for name in LAUNCH_PARAMETERS]
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2',
        namespace=LaunchConfiguration('namespace'),
        arguments=['-d', os.path.join(share, 'config', 'segmentation.rviz')],
        remappings=rviz_remappings(LaunchConfiguration('image')),
        condition=IfCondition(LaunchConfiguration('use_rviz')),
    )
    return LaunchDescription(args + [OpaqueFunction(function=node_action), rviz])
