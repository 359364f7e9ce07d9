"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without cv_bridge or rclpy.

Functions take the message's fields (or anything with ``height``, ``width``,
``encoding``, ``step`` and ``data`` attributes), so the node and the bag tools share them.
"""

from __future__ import annotations

import array as pyarray

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


def message_to_array(msg, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """An Image or CompressedImage (rclpy's or a bag's) -> (H, W, 3) uint8 and its order."""
    if hasattr(msg, 'format'):  # only CompressedImage has one
        return compressed_to_array(msg, max_pixels)
    return image_to_array(msg, max_pixels)


def compressed_to_array(msg, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """Decode a CompressedImage (jpeg or png) to an (H, W, 3) uint8 BGR array."""
    fmt = (msg.format or '').lower()
    if not any(f in fmt for f in COMPRESSED_FORMATS):
        raise ImageError(f'unsupported compressed format {msg.format!r}; accepted: jpeg, png')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageError(f'compressed image ({msg.format}) has no data')
    # The size comes from the header, before anything is decoded: a small stream that
    # claims a huge image must not allocate it (a decompression bomb).
    size = _peek_size(buf)
    if size is None:
        raise ImageError(f'compressed data ({buf.size} bytes, format {msg.format!r}) has no '
                         f'readable jpeg or png header; expected a jpeg or png stream')
    if max_pixels and size[0] * size[1] > max_pixels:
        raise ImageError(f'compressed image {size[1]}x{size[0]} (from its header) exceeds '
                         f'max_image_pixels {max_pixels}; not decoded')
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f'cannot decode {buf.size} bytes of compressed data '
                         f'(format {msg.format!r}); expected a jpeg or png stream')
    if max_pixels and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f'compressed image {img.shape[1]}x{img.shape[0]} exceeds '
                         f'max_image_pixels {max_pixels}')
    return img, 'bgr'


JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _peek_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a PNG, JPEG or WebP header without decoding; None if unknown.

    PNG: the IHDR chunk. JPEG: the first start-of-frame segment. WebP: the VP8, VP8L or
    VP8X chunk (OpenCV decodes WebP whatever the message's format field says).
    """
    b = memoryview(buf)  # byte access without copying the stream
    if len(b) >= 24 and b[:8] == b'\x89PNG\r\n\x1a\n':
        return int.from_bytes(b[20:24], 'big'), int.from_bytes(b[16:20], 'big')
    if len(b) >= 4 and b[:2] == b'\xff\xd8':
        i = 2  # segments before the frame header can be long (EXIF, ICC): walk them
        while i + 4 <= len(b):
            if b[i] != 0xFF:
                return None
            marker = b[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in JPEG_SOF:
                if i + 9 > len(b):
                    return None
                return int.from_bytes(b[i + 5:i + 7], 'big'), int.from_bytes(b[i + 7:i + 9], 'big')
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
                i += 2
                continue
            i += 2 + int.from_bytes(b[i + 2:i + 4], 'big')
        return None
    if len(b) >= 30 and b[:4] == b'RIFF' and b[8:12] == b'WEBP':
        chunk = b[12:16]
        if chunk == b'VP8 ' and b[23:26] == b'\x9d\x01\x2a':
            return (int.from_bytes(b[28:30], 'little') & 0x3FFF,
                    int.from_bytes(b[26:28], 'little') & 0x3FFF)
        if chunk == b'VP8L' and b[20] == 0x2F:
            bits = int.from_bytes(b[21:25], 'little')
            return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
        if chunk == b'VP8X':
            return int.from_bytes(b[27:30], 'little') + 1, int.from_bytes(b[24:27], 'little') + 1
    return None


def array_to_fields(array: np.ndarray, encoding: str, bag: bool = False) -> dict:
    """Fields of a sensor_msgs/Image for an (H, W) or (H, W, C) uint8 array: for rclpy's
    message, or with ``bag`` for a rosbags message (data as a numpy array)."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    if bag:
        data = array.reshape(-1)
    else:
        # an array.array('B') is taken as is by the message (bytes would be copied again,
        # and checked element by element in Python where ROS_PYTHON_CHECK_FIELDS is set)
        data = pyarray.array('B')
        data.frombytes(memoryview(array).cast('B'))
    return {'height': h, 'width': w, 'encoding': encoding, 'is_bigendian': 0,
            'step': array[0].size, 'data': data}
