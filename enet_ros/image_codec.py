"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without cv_bridge or rclpy.

Functions take the message's fields (or anything with ``height``, ``width``,
``encoding``, ``step`` and ``data`` attributes), so the node and the bag tools share them.
"""

from __future__ import annotations

import cv2
import numpy as np

# encoding -> (bytes per pixel, colour order of the first three channels)
ENCODINGS = {'rgb8': (3, 'rgb'), 'bgr8': (3, 'bgr'), 'rgba8': (4, 'rgb'),
             'bgra8': (4, 'bgr'), 'mono8': (1, 'rgb')}
COMPRESSED_FORMATS = ('jpeg', 'png')
IMAGE_FILE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')  # what the tools read from folders


class ImageError(ValueError):
    """A frame that cannot be used; the message says what arrived and what is accepted."""


def image_to_array(msg, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """Return an (H, W, 3) uint8 view (zero-copy for rgb8/bgr8/rgba8/bgra8) and its order.

    Row padding (``step`` > width x bytes per pixel) is honoured; mono8 is expanded to
    three channels (a copy). Raises ImageError for anything unusable.
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f'unsupported encoding {enc!r}; accepted: {", ".join(ENCODINGS)} '
                         f'(or set input_compressed for jpeg/png)')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f'image has zero size ({w}x{h})')
    if max_pixels and h * w > max_pixels:
        raise ImageError(f'image {w}x{h} has {h * w} pixels, more than max_image_pixels '
                         f'{max_pixels}; raise the parameter if this camera is expected')
    bpp, order = ENCODINGS[enc]
    if step < w * bpp:
        raise ImageError(f'{enc} image {w}x{h} has step {step}, less than width x {bpp} '
                         f'= {w * bpp}')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * h:
        raise ImageError(f'{enc} image {w}x{h} with step {step} needs {step * h} bytes of '
                         f'data, got {buf.size}')
    rows = buf[:step * h].reshape(h, step)[:, :w * bpp]
    if bpp == 1:
        return cv2.cvtColor(np.ascontiguousarray(rows), cv2.COLOR_GRAY2RGB), order
    return rows.reshape(h, w, bpp)[:, :, :3], order


def compressed_to_array(msg, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """Decode a CompressedImage (jpeg or png) to an (H, W, 3) uint8 BGR array."""
    fmt = (msg.format or '').lower()
    if not any(f in fmt for f in COMPRESSED_FORMATS):
        raise ImageError(f'unsupported compressed format {msg.format!r}; accepted: jpeg, png')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageError(f'compressed image ({msg.format}) has no data')
    if max_pixels:
        hdr = _peek_size(buf)
        if hdr and hdr[0] * hdr[1] > max_pixels:
            raise ImageError(f'compressed image {hdr[1]}x{hdr[0]} exceeds max_image_pixels '
                             f'{max_pixels}')
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f'cannot decode {buf.size} bytes of compressed data '
                         f'(format {msg.format!r}); expected a jpeg or png stream')
    if max_pixels and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f'compressed image {img.shape[1]}x{img.shape[0]} exceeds '
                         f'max_image_pixels {max_pixels}')
    return img, 'bgr'


def _peek_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a PNG header without decoding; None when not a PNG."""
    if buf.size >= 24 and bytes(buf[:8]) == b'\x89PNG\r\n\x1a\n':
        w = int.from_bytes(bytes(buf[16:20]), 'big')
        h = int.from_bytes(bytes(buf[20:24]), 'big')
        return h, w
    return None


def array_to_fields(array: np.ndarray, encoding: str) -> dict:
    """Fields of a sensor_msgs/Image for a contiguous (H, W) or (H, W, C) uint8 array."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return {'height': h, 'width': w, 'encoding': encoding, 'is_bigendian': 0,
            'step': w * channels, 'data': array.tobytes()}
