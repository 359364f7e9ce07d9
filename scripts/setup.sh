#!/usr/bin/env bash
# Make .venv with everything enet_ros, its tests and training need. Idempotent: it does
# nothing when the requirement files have not changed since the last run.
#  - With ROS 2 sourced (ROS_DISTRO set), the venv sees the system's rclpy and messages
#    (--system-site-packages) and no ROS wheels are installed.
#  - With torch already importable (a Jetson's NVIDIA build), torch is not installed.
#  - Else torch==2.13.0 comes from pip's index; where that index serves the multi-GB CUDA
#    build, TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu picks the CPU wheel.
#  - Without a sourced ROS 2, on the Jazzy wheels, where ../shared/vendor/ros2-jazzy-python
#    is beside the checkout: its launch, launch_ros, launch_testing and ros2 CLI go into the
#    venv too (the tests run them; a sourced ROS 2 has its own).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}               # VENV=.venv-kilted ROS_WHEELS=kilted: the Kilted wheels
ROS_WHEELS=${ROS_WHEELS:-jazzy}
stamp=$VENV/.enet_ros_setup
VENDOR=../shared/vendor/ros2-jazzy-python
tools=
if [ -z "${ROS_DISTRO:-}" ] && [ "$ROS_WHEELS" = jazzy ] && [ -f "$VENDOR/install.sh" ]; then
  tools=-ros2-tools
fi
want=$(cat requirements/base.txt requirements/torch.txt "requirements/ros-$ROS_WHEELS.txt" |
  sha256sum | cut -c1-16)-${ROS_DISTRO:-pypi}$tools
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ -n "${ROS_DISTRO:-}" ]; then
  echo "setup: using the sourced ROS 2 $ROS_DISTRO"
  "$PY" -m venv --system-site-packages "$VENV"
else
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# pip's notes about this machine's index configuration are not the project's business
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
if [ -z "${ROS_DISTRO:-}" ]; then
  echo "setup: 1/5 ROS 2 $ROS_WHEELS Python wheels (requirements/ros-$ROS_WHEELS.txt)"
  quiet "${pip[@]}" -r "requirements/ros-$ROS_WHEELS.txt"
fi
if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "setup: 2/5 keeping the installed torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
else
  # not quiet: where the wheel is downloaded (hundreds of MB, several GB for a CUDA
  # build), pip shows its progress
  echo "setup: 2/5 torch (requirements/torch.txt)"
  quiet "$VENV/bin/python" -m pip install --disable-pip-version-check \
    ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} -r requirements/torch.txt
fi
echo "setup: 3/5 the other requirements (requirements/base.txt)"
quiet "${pip[@]}" -r requirements/base.txt
# the package itself, editable: make_bag, evaluate_bag, replay_bag, demo and
# segmentation_node land in .venv/bin, and `import enet_ros` works from any folder
echo "setup: 4/5 enet_ros itself (editable)"
quiet "${pip[@]}" --no-deps --no-build-isolation -e .
if [ -n "$tools" ]; then
  echo "setup: 5/5 launch, launch_testing and the ros2 CLI ($VENDOR/install.sh)"
  quiet bash "$VENDOR/install.sh" "$VENV" > /dev/null
fi
echo "$want" > "$stamp"
echo "setup: $VENV ready"
