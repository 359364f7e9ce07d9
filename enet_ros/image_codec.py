"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without cv_bridge or rclpy.

Functions take the message's fields (or anything with ``height``, ``width``,
``encoding``, ``step`` and ``data`` attributes), so the node and the bag tools share them.
"""

from __future__ import annotations

import array as pyarray

import cv2
import numpy as np

# encoding -> (bytes per pixel, colour order of the first three channels): the layouts
# returned as a view of the message
ENCODINGS = {'rgb8': (3, 'rgb'), 'bgr8': (3, 'bgr'), 'rgba8': (4, 'rgb'),
             'bgra8': (4, 'bgr'), 'mono8': (1, 'rgb')}
# what USB (usb_cam, v4l2_camera) and machine-vision (GigE, USB3) drivers publish unconverted:
# encoding -> (channels, bytes per sample, OpenCV conversion to RGB or None), as
# sensor_msgs/image_encodings names them. 'yuv422' is UYVY and 'yuv422_yuy2' is YUYV (the
# names before Kilted's 'uyvy' and 'yuyv'). OpenCV names a Bayer pattern after the 2x2
# block starting at the second row and column, so RGGB demosaics with its BayerBG code.
CONVERTED = {
    'yuv422': (2, 1, cv2.COLOR_YUV2RGB_UYVY), 'uyvy': (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': (2, 1, cv2.COLOR_YUV2RGB_YUY2), 'yuyv': (2, 1, cv2.COLOR_YUV2RGB_YUY2),
    **{f'bayer_{p}{bits}': (1, bits // 8, code)
       for p, code in (('rggb', cv2.COLOR_BayerBG2RGB), ('bggr', cv2.COLOR_BayerRG2RGB),
                       ('gbrg', cv2.COLOR_BayerGR2RGB), ('grbg', cv2.COLOR_BayerGB2RGB))
       for bits in (8, 16)},
    'mono16': (1, 2, cv2.COLOR_GRAY2RGB), 'rgb16': (3, 2, None), 'bgr16': (3, 2, None),
    'rgba16': (4, 2, None), 'bgra16': (4, 2, None),
}
ACCEPTED = ', '.join([*ENCODINGS, *CONVERTED])
COMPRESSED_FORMATS = ('jpeg', 'png')
IMAGE_FILE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')  # what the tools read from folders


def stamp_ns(header) -> int:
    """A message header's stamp (rclpy's or a bag's) in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def stamp_key(header) -> tuple[int, int]:
    """(sec, nanosec) of a header: a hashable key that matches outputs to their inputs."""
    return int(header.stamp.sec), int(header.stamp.nanosec)


class ImageError(ValueError):
    """A frame that cannot be used; the message says what arrived and what is accepted."""


def image_to_array(msg, max_pixels: int | None = None,
                   bits: int = 16) -> tuple[np.ndarray, str]:
    """Return an (H, W, 3) uint8 image and its channel order ('rgb' or 'bgr').

    rgb8, bgr8, rgba8 and bgra8 come back as a view of the message (no copy); every other
    accepted encoding is converted once, to RGB: mono8 expanded, YUV 4:2:2 and Bayer by
    OpenCV's conversions. 16-bit samples (``is_bigendian`` honoured) are scaled to 8 bits
    from a range of ``bits`` bits (16: the full 0-65535; 12: a camera writing 0-4095), values
    above it saturating. Row padding (``step`` > width x bytes per pixel) is honoured.
    Raises ImageError for anything unusable.
    """
    enc = msg.encoding
    if enc in ENCODINGS:
        bpp, order = ENCODINGS[enc]
        channels, sample, code = bpp, 1, None
    elif enc in CONVERTED:
        channels, sample, code = CONVERTED[enc]
        bpp, order = channels * sample, 'bgr' if enc.startswith('bgr') else 'rgb'
    else:
        raise ImageError(f'unsupported encoding {enc!r}; accepted: {ACCEPTED} '
                         f'(or image_transport compressed for jpeg/png)')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f'image has zero size ({w}x{h})')
    if max_pixels and h * w > max_pixels:
        raise ImageError(f'image {w}x{h} has {h * w} pixels, more than max_image_pixels '
                         f'{max_pixels}; raise the parameter if this camera is expected')
    if enc in CONVERTED and channels == 2 and w % 2:
        raise ImageError(f'{enc} image {w}x{h} has an odd width; YUV 4:2:2 pairs pixels, so '
                         f'its width must be even')
    if enc.startswith('bayer_') and (w < 2 or h < 2):
        raise ImageError(f'{enc} image {w}x{h} is smaller than one 2x2 Bayer block')
    if step < w * bpp:
        raise ImageError(f'{enc} image {w}x{h} has step {step}, less than width x {bpp} '
                         f'= {w * bpp}')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * h:
        raise ImageError(f'{enc} image {w}x{h} with step {step} needs {step * h} bytes of '
                         f'data, got {buf.size}')
    rows = buf[:step * h].reshape(h, step)[:, :w * bpp]
    if sample == 2:
        big = bool(getattr(msg, 'is_bigendian', 0))
        rows = np.ascontiguousarray(rows).view('>u2' if big else '<u2')
        rows = np.minimum(rows >> (bits - 8), 255).astype(np.uint8)
    pixels = rows.reshape(h, w, channels) if channels > 1 else rows
    if code is not None:
        return cv2.cvtColor(np.ascontiguousarray(pixels), code), order
    if channels == 1:  # mono8
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB), order
    return pixels[:, :, :3], order


def message_to_array(msg, max_pixels: int | None = None,
                     bits: int = 16) -> tuple[np.ndarray, str]:
    """An Image or CompressedImage (rclpy's or a bag's) -> (H, W, 3) uint8 and its order;
    ``bits``: the range of 16-bit samples (``image_to_array``)."""
    if hasattr(msg, 'format'):  # only CompressedImage has one
        return compressed_to_array(msg, max_pixels)
    return image_to_array(msg, max_pixels, bits)


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


# image_transport's compressed publisher names a PNG of a mono8 image so (the encoding,
# the compression, and no target colour format for a single channel)
MASK_PNG_FORMAT = 'mono8; png compressed '


# zlib's fastest level, run-length matching and no row filter: on CamVid masks at 720p
# 2.3 ms and 10 KB, where OpenCV's defaults took 15 ms for 11 KB (class ids come in long
# runs; filters only scramble them)
MASK_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                   cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER,
                   cv2.IMWRITE_PNG_FILTER_NONE]


def mask_to_png(ids: np.ndarray) -> bytes:
    """An (H, W) uint8 class-id mask as a lossless PNG stream (``MASK_PNG_PARAMS``)."""
    ok, png = cv2.imencode('.png', np.ascontiguousarray(ids), MASK_PNG_PARAMS)
    if not ok:
        raise ImageError(f'cannot encode a {ids.shape} mask as PNG')
    return png.tobytes()


def message_to_mask(msg) -> np.ndarray:
    """A class-id mask message -> (H, W) uint8: a mono8 Image (row padding honoured) or a
    CompressedImage holding a single-channel PNG (``segmentation/mask/compressed``)."""
    if hasattr(msg, 'format'):
        data = np.frombuffer(msg.data, np.uint8)
        if 'png' not in (msg.format or '').lower() or data.size == 0:
            raise ImageError(f'a compressed mask must be a PNG stream, got format '
                             f'{msg.format!r} with {data.size} bytes')
        ids = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if ids is None or ids.ndim != 2 or ids.dtype != np.uint8:
            raise ImageError(f'compressed mask ({data.size} bytes) is not a single-channel '
                             f'8-bit PNG')
        return ids
    if msg.encoding not in ('mono8', '8UC1'):
        raise ImageError(f'a mask must be mono8 (class ids), got {msg.encoding!r}')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, np.uint8)
    if h <= 0 or w <= 0 or step < w or data.size < step * h:
        raise ImageError(f'mask message {w}x{h} with step {step} and {data.size} bytes of '
                         f'data is inconsistent')
    return data[:step * h].reshape(h, step)[:, :w]
