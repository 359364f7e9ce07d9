"""The DDS set-up every process of the graph needs for camera images on one host.

FastDDS's default shared-memory segment (0.5 MB) is smaller than one 640x360 rgb8 frame:
between processes such frames fall back to UDP fragments and, under best-effort QoS,
most are lost (70-85% measured at 640x360 to 1080p). The shipped profile
``config/fastdds.xml`` gives a 32 MB segment; it must be set in every process that
publishes or subscribes images, before that process starts ROS.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
FASTDDS_RMWS = ('rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp')  # the default RMW is the first


def share_file(relative: str) -> Path:
    """A file of the package's share folder (config/..., launch/...), source or installed."""
    local = PACKAGE_ROOT / relative
    if local.exists():
        return local
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('enet_ros')) / relative


def profiles_variable() -> str:
    """The variable Fast DDS reads its XML profile from: FASTDDS_DEFAULT_PROFILES_FILE from
    Fast DDS 3 (ROS 2 Kilted on), FASTRTPS_DEFAULT_PROFILES_FILE before (Jazzy)."""
    distro = os.environ.get('ROS_DISTRO')
    if distro:
        new = distro not in ('humble', 'iron', 'jazzy')
    else:  # the PyPI wheels: Fast DDS 3 ships as ros-fastdds, 2.x as ros-fastrtps
        from importlib.metadata import PackageNotFoundError, version
        try:
            new = int(version('ros-fastdds').split('.')[0]) >= 3
        except PackageNotFoundError:
            new = False
    return 'FASTDDS_DEFAULT_PROFILES_FILE' if new else 'FASTRTPS_DEFAULT_PROFILES_FILE'


def segment_warning(env: dict | None = None) -> str | None:
    """One line for a process about to take images over FastDDS with the default
    shared-memory segment (no profile set, or one that sets no segment size); else None."""
    env = os.environ if env is None else env
    if env.get('RMW_IMPLEMENTATION', FASTDDS_RMWS[0]) not in FASTDDS_RMWS:
        return None
    variable = profiles_variable()
    profile = env.get(variable) or env.get('FASTRTPS_DEFAULT_PROFILES_FILE') or \
        env.get('FASTDDS_DEFAULT_PROFILES_FILE')
    fix = (f'set {variable}={share_file("config/fastdds.xml")} in every process of the '
           f'graph (segmentation.launch.py sets it for this node)')
    if not profile:
        return (f'FastDDS runs with its default 0.5 MB shared-memory segment: camera frames '
                f'larger than that are mostly lost between processes; {fix}')
    try:
        text = Path(profile).read_text(errors='replace')
    except OSError as exc:
        return f'FastDDS profile {profile} cannot be read ({exc.strerror}); {fix}'
    if 'segment_size' not in text:
        return (f'FastDDS profile {profile} sets no shared-memory segment_size: camera frames '
                f'above 0.5 MB are mostly lost between processes; {fix}')
    return None
