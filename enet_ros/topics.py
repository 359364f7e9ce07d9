"""The node's name, its topics (relative: under the node's namespace and each camera's)
and the names of its diagnostics statuses, for the node, its tools, benchmarks and tests."""

NODE_NAME = 'enet_segmentation'

IMAGE = 'image'
COMPRESSED_IMAGE = 'image/compressed'
CAMERA_INFO = 'camera_info'
MASK = 'segmentation/mask'
MASK_COMPRESSED = 'segmentation/mask/compressed'  # image_transport's compressed transport
COLOR_MASK = 'segmentation/color_mask'
OVERLAY = 'segmentation/overlay'
CONFIDENCE = 'segmentation/confidence'
MASK_CAMERA_INFO = 'segmentation/camera_info'
CLASS_INFO = 'segmentation/class_info'
LABEL_INFO = 'segmentation/label_info'
DIAGNOSTICS = '/diagnostics'

# the image outputs by short name (Segmenter.render's keys, the test client's outputs)
IMAGE_OUTPUTS = {'mask': MASK, 'color_mask': COLOR_MASK, 'overlay': OVERLAY,
                 'confidence': CONFIDENCE, 'mask_compressed': MASK_COMPRESSED}


def status_name(namespace: str = '', camera: str = '') -> str:
    """The diagnostics status of one camera: '<node's full name>: <camera or image>'."""
    return f'{namespace.rstrip("/")}/{NODE_NAME}: {camera or IMAGE}'
