"""Start the ENet segmentation node: ros2 launch enet_ros segmentation.launch.py."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory('enet_ros')
    args = [
        DeclareLaunchArgument('image', default_value='image',
                              description="Input image topic (remapped onto the node's image)"),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace for the node and its topics'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'segmentation.yaml'),
                              description='Parameters file for the node'),
        DeclareLaunchArgument('device', default_value='auto',
                              description='Inference device: auto, cpu or cuda'),
        DeclareLaunchArgument('precision', default_value='auto',
                              description='Inference precision: auto, fp32, fp16 or bf16'),
        DeclareLaunchArgument('input_compressed', default_value='false',
                              description='Subscribe <image>/compressed (jpeg, png)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Logging level: debug, info, warn, error'),
        DeclareLaunchArgument('use_rviz', default_value='false',
                              description='Also start rviz2 with config/segmentation.rviz'),
    ]
    image = LaunchConfiguration('image')
    node = Node(
        package='enet_ros',
        executable='segmentation_node',
        name='enet_segmentation',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), {
            'device': LaunchConfiguration('device'),
            'precision': LaunchConfiguration('precision'),
            'input_compressed': LaunchConfiguration('input_compressed'),
        }],
        remappings=[('image', image), ('image/compressed', [image, '/compressed'])],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2',
        arguments=['-d', os.path.join(share, 'config', 'segmentation.rviz')],
        condition=IfCondition(LaunchConfiguration('use_rviz')),
    )
    return LaunchDescription(args + [node, rviz])
