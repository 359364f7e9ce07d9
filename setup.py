from glob import glob

from setuptools import find_packages, setup

package_name = 'enet_ros'

setup(
    name=package_name,
    version='0.1.0',
    # training/ stays in the repository (run it from there); a vehicle needs only enet_ros
    packages=find_packages(include=['enet_ros', 'enet_ros.*']),
    package_data={'enet_ros': ['weights/*.pt', 'weights/*.onnx', 'demo_frames/*.jpg',
                               'demo_frames/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='enet_ros maintainers',
    maintainer_email='enet-ros@example.com',
    description='Real-time ENet semantic segmentation node for ROS 2',
    license='BSD-3-Clause',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'segmentation_node = enet_ros.segmentation_node:main',
            'managed_segmentation_node = enet_ros.managed_segmentation_node:main',
            'demo = enet_ros.tools.demo:main',
            'evaluate_bag = enet_ros.tools.evaluate_bag:main',
            'replay_bag = enet_ros.tools.replay_bag:main',
            'make_bag = enet_ros.tools.make_bag:main',
        ],
    },
)
