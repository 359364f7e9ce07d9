"""The node's parameters, declared once: the node (``declare``), its ``--help``, the
launch file's arguments and ``config/segmentation.yaml`` (checked against it by a test)
read this table. Imports neither torch nor ROS (``rcl_interfaces`` only when a descriptor
is built or a change is answered), so a launch file can read it cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

DEVICES = ('auto', 'cpu', 'cuda')
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16')
BACKENDS = ('auto', 'eager', 'compile')
RELIABILITY = ('best_effort', 'reliable')
TRANSPORTS = ('raw', 'compressed')  # image_transport's names


@dataclass(frozen=True)
class Param:
    """One node parameter: the node declares it, ``--help`` and doc/node.md list it."""

    name: str
    default: object
    description: str
    read_only: bool = False
    choices: tuple[str, ...] = ()
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None
    from_model: bool = False  # declared once the weights are loaded, with their values

    def descriptor(self):
        from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                        ParameterType)
        description = self.description
        if self.choices:
            description += f' One of: {", ".join(self.choices)}.'
        d = ParameterDescriptor(description=description, read_only=self.read_only)
        if isinstance(self.default, list):
            d.type = ParameterType.PARAMETER_STRING_ARRAY
        if self.float_range:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.float_range[0]),
                                                         to_value=float(self.float_range[1]))]
        if self.int_range:
            d.integer_range = [IntegerRange(from_value=int(self.int_range[0]),
                                            to_value=int(self.int_range[1]), step=1)]
        return d


PARAMETERS = (
    Param('model_path', '', 'ENet checkpoint (from python -m training.export); empty = the '
          'CamVid weights shipped in the package.', read_only=True),
    Param('device', 'auto', 'Inference device.', True, DEVICES),
    Param('precision', 'auto', 'Inference precision; auto = fp16 on CUDA, on CPU bf16 where '
          'it agrees with fp32 on >= 99% of pixels, else fp32.', True, PRECISIONS),
    Param('backend', 'auto', 'auto = compile on CPU (AOTInductor package, built once and '
          'cached on disk), eager on CUDA.', True, BACKENDS),
    Param('adapt_statistics', False, "Batch-norm means that follow each camera's drive: "
          "half the training means, half an average of its frames' (one frame per second "
          'of header-stamp time, 10 s memory); measured on held-out drives (doc/model.md).',
          True),
    Param('input_width', 0, 'Network input width (multiple of 8); 0 = the checkpoint '
          'training size.', True, int_range=(0, 8192)),
    Param('input_height', 0, 'Network input height (multiple of 8); 0 = the checkpoint '
          'training size.', True, int_range=(0, 8192)),
    Param('image_transport', 'raw', 'Input transport, as image_transport names them: raw '
          'subscribes image, compressed subscribes image/compressed (jpeg, png).', True,
          TRANSPORTS),
    Param('input_compressed', False, 'Deprecated: image_transport compressed does the same '
          '(true still subscribes image/compressed, with a warning).', True),
    Param('input_bits', 16, 'Significant bits of 16-bit encodings (mono16, rgb16, bgr16, '
          'bayer_*16): 8-bit pixels are value >> (input_bits - 8); 16 = full range, 12 = a '
          'camera writing 0-4095, larger values saturate.', int_range=(8, 16)),
    Param('autostart', False, 'Managed node only: configure and activate itself at start '
          "(as Nav2's lifecycle manager autostart does); leave false when a lifecycle "
          'manager of your own brings it up.', True),
    Param('input_reliability', 'best_effort', 'Input QoS reliability; best_effort also '
          'receives reliable publishers.', True, RELIABILITY),
    Param('output_reliability', 'reliable', 'Output QoS reliability.', True,
          RELIABILITY),
    Param('output_depth', 2, 'Output QoS history depth.', True, int_range=(1, 100)),
    Param('cameras', [''], 'Camera namespaces served by this node with one shared model; '
          'each gets <ns>/image in and <ns>/segmentation/* out. [""] = one camera, no '
          'namespace.', True),
    Param('num_threads', 0, 'Threads for the network; 0 = auto: the CPUs this process may '
          'use (affinity, cgroup quota), and 1 whenever measurement shows a busy neighbour '
          'makes that faster. Pin cores and set this on a vehicle.', True,
          int_range=(0, 256)),
    Param('overlay_alpha', 0.5, 'Weight of the colour mask in the overlay.',
          float_range=(0.0, 1.0)),
    Param('color_order', 'rgb', 'Channel order of segmentation/color_mask (rgb8 or bgr8). '
          'The overlay always keeps the input order.', choices=('rgb', 'bgr')),
    Param('publish_color_mask', True, 'Publish segmentation/color_mask (computed only when '
          'subscribed).'),
    Param('publish_overlay', True, 'Publish segmentation/overlay (computed only when '
          'subscribed).'),
    Param('latency_budget_ms', 100.0, 'Diagnostics turn WARN when the max receipt-to-publish '
          'latency in a window exceeds this.', float_range=(1.0, 60000.0)),
    Param('stale_timeout_s', 3.0, 'Diagnostics turn STALE when no frame arrived for this '
          'long, and ERROR when frames arrive but no mask left for this long.',
          float_range=(0.1, 3600.0)),
    Param('min_confidence_ratio', 0.9, "Diagnostics turn WARN when a camera's mean "
          'confidence in a window falls below this fraction of the held-out figure in the '
          'model card (a blinded, covered or night camera); 0 = off.',
          float_range=(0.0, 1.0)),
    Param('max_class_mix_distance', 0.6, 'Diagnostics turn WARN when the share of pixels per '
          'class in a window differs from the held-out mix by more than this (total '
          'variation distance, 0-1); 1 = off.', float_range=(0.0, 1.0)),
    Param('max_image_pixels', 3840 * 2160, 'Frames with more pixels are rejected (protects '
          'memory and latency).', int_range=(1, 100_000_000)),
    Param('class_names', [], 'Class names from the weights; mask value i is class_names[i].',
          True, from_model=True),
    Param('palette', None, 'Class colours from the weights, flattened r, g, b per class.',
          True, from_model=True),
)
TABLE = {p.name: p for p in PARAMETERS}


class ParameterError(ValueError):
    """A parameter value the node cannot start with; the message names it and the choices."""


def declare(node) -> SimpleNamespace:
    """Declare every parameter but the weights' ones on ``node``; return the read-only
    values (the start-up configuration), checked against their choices, with
    ``compressed`` (which input transport) and ``cameras`` (a tuple) worked out."""
    for param in PARAMETERS:
        if not param.from_model:
            node.declare_parameter(param.name, param.default, param.descriptor())
    config = {}
    for param in PARAMETERS:
        if param.from_model:
            continue
        value = node.get_parameter(param.name).value
        if param.choices and value not in param.choices:
            raise ParameterError(f'parameter {param.name}={value!r} is not one of '
                                 f'{", ".join(param.choices)}')
        if param.read_only:
            config[param.name] = value
    config['compressed'] = config['input_compressed'] or \
        config['image_transport'] == 'compressed'
    config['cameras'] = cameras = tuple(config['cameras'] or [''])
    if len(set(cameras)) != len(cameras):
        raise ParameterError(f'parameter cameras lists a namespace twice: {list(cameras)}')
    return SimpleNamespace(**config)


def declare_model(node, class_names, palette) -> None:
    """The weights' read-only parameters, once (a managed node configures again with the
    same model_path)."""
    values = {'class_names': list(class_names), 'palette': [v for c in palette for v in c]}
    for name, value in values.items():
        if not node.has_parameter(name):
            node.declare_parameter(name, value, TABLE[name].descriptor())


def check_change(params):
    """The answer to a live change: refused, with the reason, where a value is not one of
    its parameter's choices (ranges are checked by ROS from the descriptors)."""
    from rcl_interfaces.msg import SetParametersResult
    for param in params:
        known = TABLE.get(param.name)
        if known and known.choices and param.value not in known.choices:
            *first, last = known.choices
            return SetParametersResult(successful=False, reason=(
                f'{param.name} must be {", ".join(first)} or {last}, got {param.value!r}'))
    return SetParametersResult(successful=True)
