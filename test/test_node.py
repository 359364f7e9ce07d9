"""The node as users run it: a separate process, real rclpy and FastDDS, outputs checked in
this process (publisher and subscriber)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from enet_ros.colors import distinct_palette
from enet_ros.image_codec import array_to_fields, stamp_key
from enet_ros.segmenter import reference_frame, Segmenter
from enet_ros.tools.client import NodeProcess, ros_env, SegmentationClient
from enet_ros.topics import status_name

from conftest import CAMVID_NAMES, CAMVID_PALETTE, decompression_bomb, run_python


def diag_values(client, name):
    """Key/values of the newest diagnostics status with this name."""
    for arr in reversed(client.received['diagnostics'].messages):
        for status in arr.status:
            if status.name == name:
                return status, {kv.key: kv.value for kv in status.values}
    return None, {}


def wait_diag(client, predicate, timeout=10.0, name=None):
    name = name or status_name()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, values = diag_values(client, name)
        if status is not None and predicate(status, values):
            return status, values
        time.sleep(0.1)
    status, values = diag_values(client, name)
    assert status is not None, f'no diagnostics status named {name!r}'
    return status, values


@contextlib.contextmanager
def serving(params: dict, ns: str, env=None, module='enet_ros.segmentation_node', **client):
    """A node process in namespace ``ns`` and a client of it, both ready."""
    with NodeProcess(params, ros_args=['-r', f'__ns:={ns}'], env=env, module=module) as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace=ns, name=f'{ns.strip("/")}_client', **client)
        try:
            c.wait_for_node()
            yield proc, c
        finally:
            c.close()


@pytest.fixture(scope='module')
def node(weights, ros):
    with NodeProcess({'model_path': str(weights), 'backend': 'eager', 'device': 'cpu',
                      'precision': 'fp32', 'max_image_pixels': 200_000,
                      'overlay_alpha': 0.4}) as proc:
        proc.wait_ready()
        yield proc
        assert proc.proc.poll() is None, proc.log()


@pytest.fixture(scope='module')
def client(node):
    c = SegmentationClient(outputs=('mask', 'color_mask', 'overlay'), name='test_client')
    c.wait_for_node()
    yield c
    c.close()


def _padded(image: np.ndarray, encoding: str, step: int):
    """An Image message of ``image`` with each row padded to ``step`` bytes."""
    from sensor_msgs.msg import Image
    msg = Image(**array_to_fields(image, encoding))
    row = image.reshape(msg.height, -1)
    msg.data = np.pad(row, ((0, 0), (0, step - msg.step))).tobytes()
    msg.step = step
    return msg


def _send_and_get(client, image, encoding, step, timeout=10.0, msg=None):
    before = {k: client.received[k].count for k in ('mask', 'color_mask', 'overlay')}
    msg = client.publish(msg=msg or _padded(image, encoding, step), frame_id=f'cam_{encoding}')
    for key in before:
        assert client.wait(key, before[key] + 1, timeout), f'no {key} for {encoding}'
    return msg, {k: client.received[k].messages[-1] for k in before}


ENCODINGS = [('rgb8', 3), ('bgr8', 3), ('rgba8', 4), ('bgra8', 4), ('mono8', 1)]


@pytest.mark.parametrize('encoding,channels', ENCODINGS)
@pytest.mark.parametrize('width,pad', [(97, 0), (131, 7)])
def test_encodings_through_dds(client, weights, encoding, channels, width, pad):
    rng = np.random.default_rng(width)
    h = 59
    arr = rng.integers(0, 256, (h, width, channels), dtype=np.uint8)
    step = width * channels + pad
    sent, out = _send_and_get(client, arr, encoding, step=step)
    mask = out['mask']
    assert (mask.encoding, mask.height, mask.width, mask.step) == ('mono8', h, width, width)
    assert mask.header.stamp == sent.header.stamp
    assert mask.header.frame_id == sent.header.frame_id
    labels = np.frombuffer(mask.data, np.uint8).reshape(h, width)
    assert labels.max() < 11

    # the node converted the frame as the core expects: same ids as in-process
    order = 'bgr' if encoding.startswith('bgr') else 'rgb'
    rgb3 = np.repeat(arr, 3, axis=2) if channels == 1 else arr[:, :, :3]
    expected, _ = Segmenter(weights, 'cpu', 'fp32', 'eager').segment(
        np.ascontiguousarray(rgb3), order)
    assert (expected == labels).mean() > 0.999

    color = out['color_mask']
    assert (color.encoding, color.height, color.width) == ('rgb8', h, width)
    color_arr = np.frombuffer(color.data, np.uint8).reshape(h, width, 3)
    np.testing.assert_array_equal(color_arr, np.asarray(CAMVID_PALETTE, np.uint8)[labels])

    overlay = out['overlay']
    assert overlay.encoding == f'{order}8'
    assert overlay.header.stamp == sent.header.stamp
    ov = np.frombuffer(overlay.data, np.uint8).reshape(h, width, 3)
    palette = np.asarray(distinct_palette(len(CAMVID_PALETTE)), np.uint8)  # told apart
    if order == 'bgr':
        palette = palette[:, ::-1]
    expected_ov = cv2.addWeighted(np.ascontiguousarray(palette[labels]), 0.4,
                                  np.ascontiguousarray(rgb3), 0.6, 0)
    np.testing.assert_array_equal(ov, expected_ov)


def _camera_frames(encoding: str, big_endian: bool = False):
    """(message as a driver publishes it, the same frame converted to rgb8 by OpenCV
    beforehand) for a camera encoding; a smooth image, so that demosaicing is exact enough
    to be compared with a per-pixel mask."""
    from sensor_msgs.msg import Image
    h, w = 48, 64
    small = np.random.default_rng(len(encoding)).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if encoding in ('yuv422_yuy2', 'yuyv', 'yuv422', 'uyvy'):
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.uint16)
        y, u, v = yuv[..., 0], yuv[:, 0::2, 1], yuv[:, 0::2, 2]
        packed = np.empty((h, w * 2), np.uint8)  # one (u, v) pair for two pixels
        if encoding in ('yuv422_yuy2', 'yuyv'):
            packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = \
                y[:, 0::2], u, y[:, 1::2], v
            code = cv2.COLOR_YUV2RGB_YUY2
        else:
            packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = \
                u, y[:, 0::2], v, y[:, 1::2]
            code = cv2.COLOR_YUV2RGB_UYVY
        data, step = packed, w * 2
        reference = cv2.cvtColor(packed.reshape(h, w, 2), code)
    else:
        depth = 16 if encoding.endswith('16') else 8
        # full 16-bit range; low bytes unlike the high ones, so a byte-order error shows
        values = rgb.astype(np.uint16) * 256 + 37 if depth == 16 else rgb
        if encoding.startswith('bayer_'):
            pattern = encoding[6:10]
            raw = np.zeros((h, w), values.dtype)
            for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                raw[dy::2, dx::2] = values[dy::2, dx::2, 'rgb'.index(pattern[k])]
            # cv_bridge's pairing of ROS Bayer names with OpenCV's codes
            code = {'rggb': cv2.COLOR_BayerBG2RGB, 'bggr': cv2.COLOR_BayerRG2RGB,
                    'gbrg': cv2.COLOR_BayerGR2RGB, 'grbg': cv2.COLOR_BayerGB2RGB}[pattern]
            eight = (raw >> 8).astype(np.uint8) if depth == 16 else raw
            reference = cv2.cvtColor(eight, code)
            data = raw
        elif encoding == 'mono16':
            data = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 256 + 37
            reference = cv2.cvtColor((data >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
        else:  # rgb16, bgr16
            data = values[..., ::-1] if encoding.startswith('bgr') else values
            reference = rgb
        step = data[0].nbytes
        if depth == 16:
            data = data.astype('>u2' if big_endian else '<u2')
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian),
                step=step + 6, data=np.pad(np.ascontiguousarray(data).view(np.uint8)
                                           .reshape(h, -1), ((0, 0), (0, 6))).tobytes())
    ref = Image(**array_to_fields(np.ascontiguousarray(reference), 'rgb8'))
    return msg, ref


CAMERA_ENCODINGS = ['yuv422_yuy2', 'yuyv', 'yuv422', 'uyvy', 'bayer_rggb8', 'bayer_bggr8',
                    'bayer_gbrg8', 'bayer_grbg8', 'mono16', 'rgb16', 'bgr16', 'bayer_rggb16',
                    'bayer_bggr16', 'bayer_gbrg16', 'bayer_grbg16']


@pytest.mark.parametrize('encoding', CAMERA_ENCODINGS)
def test_camera_encodings_through_dds(client, encoding):
    """What USB and machine-vision drivers publish unconverted (rows padded by 6 bytes,
    16-bit in both byte orders): the mask at the frame's resolution equals the mask of
    the same frame converted to rgb8 by OpenCV beforehand, and the overlay is blended on
    the converted colour image."""
    for big_endian in ((False, True) if encoding.endswith('16') else (False,)):
        msg, ref = _camera_frames(encoding, big_endian)
        _, out = _send_and_get(client, None, encoding, None, msg=msg)
        _, want = _send_and_get(client, None, 'rgb8', None, msg=ref)
        got, expected = (np.frombuffer(o['mask'].data, np.uint8).reshape(48, 64)
                         for o in (out, want))
        assert (out['mask'].width, out['mask'].height) == (64, 48)
        assert (got == expected).mean() >= 0.99, (encoding, big_endian)
        assert out['overlay'].encoding in ('rgb8', 'bgr8')
        ov, ov_ref = (np.frombuffer(o['overlay'].data, np.uint8).reshape(48, 64, 3)
                      for o in (out, want))
        if out['overlay'].encoding == 'bgr8':
            ov = ov[:, :, ::-1]
        assert np.abs(ov.astype(int) - ov_ref).mean() < 2, (encoding, big_endian)


@pytest.mark.parametrize('encoding,width,step,data,message', [
    ('yuv422_yuy2', 63, 126, 126 * 48, 'odd width'),
    ('uyvy', 64, 100, 128 * 48, 'has step 100, less than width x 2'),
    ('bayer_rggb16', 64, 128, 128 * 47, 'needs 6144 bytes of data, got 6016'),
    ('nv12', 64, 64, 64 * 72, "unsupported encoding 'nv12'; accepted: rgb8"),
])
def test_malformed_camera_frames_rejected_in_one_line(client, node, encoding, width, step,
                                                      data, message):
    from sensor_msgs.msg import Image
    name = status_name()
    rejected = int(diag_values(client, name)[1].get('frames_rejected', 0))
    client.publish(msg=Image(height=48, width=width, encoding=encoding, step=step,
                             data=bytes(data)))
    _, values = wait_diag(client, lambda s, v: int(v['frames_rejected']) > rejected)
    assert int(values['frames_rejected']) == rejected + 1
    assert message in values['last_error'] and encoding in values['last_error']
    assert '\n' not in values['last_error']
    msg, _ = _camera_frames('yuyv')
    _send_and_get(client, None, 'yuyv', None, msg=msg)  # the next frame is answered
    assert node.proc.poll() is None


def test_diagnostics_content(client):
    client.publish(np.zeros((40, 48, 3), np.uint8), 'rgb8')
    status, values = wait_diag(client, lambda s, v: int(v['frames_processed']) > 0)
    assert status is not None, 'no diagnostics from the node'
    assert status.hardware_id == 'cpu'
    for key in ('model', 'device', 'precision', 'input_fps', 'output_fps',
                'preprocess_ms_mean', 'preprocess_ms_max', 'inference_ms_mean',
                'inference_ms_max', 'postprocess_ms_mean', 'processing_ms_mean',
                'message_age_ms_mean', 'threads', 'frames_received', 'frames_processed',
                'frames_dropped', 'frames_rejected', 'statistics'):
        assert key in values, key
    assert values['precision'] == 'fp32' and values['device'] == 'cpu'
    assert values['statistics'].startswith('as trained')
    assert 'camvid' in values['model']


def _bad_frames(client):
    from sensor_msgs.msg import Image
    good = np.full((30, 40, 3), 90, np.uint8)
    bad = []
    m = Image(height=30, width=40, encoding='16UC1', step=80, data=bytes(2400))
    bad.append(m)
    m = Image(height=30, width=40, encoding='rgb8', step=120, data=bytes(100))  # short
    bad.append(m)
    m = Image(height=0, width=40, encoding='rgb8', step=120, data=b'')
    bad.append(m)
    m = Image(height=500, width=500, encoding='mono8', step=500, data=bytes(250_000))
    bad.append(m)  # more pixels than max_image_pixels (200000)
    return good, bad


def test_bad_frames_never_kill_the_node(client, node):
    _, before = wait_diag(client, lambda s, v: True)
    rejected0 = int(before.get('frames_rejected', 0))
    good, bad = _bad_frames(client)
    got = client.received['mask'].count
    sent_good = []
    for msg in bad:
        m = client.publish(msg=msg)
        time.sleep(0.15)  # one at a time: newest-frame mailbox must not supersede them
        g = client.publish(good, 'rgb8')
        sent_good.append((g.header.stamp.sec, g.header.stamp.nanosec))
        time.sleep(0.15)
        del m
    assert client.wait('mask', got + len(bad), 10)
    stamps = client.received['mask'].stamps
    assert all(s in stamps for s in sent_good)
    status, values = wait_diag(
        client, lambda s, v: int(v['frames_rejected']) >= rejected0 + len(bad))
    assert int(values['frames_rejected']) == rejected0 + len(bad)
    assert 'unsupported encoding' in node.log() or 'frame skipped' in node.log()
    assert node.proc.poll() is None


def test_live_parameters_validated(client, node):
    from rcl_interfaces.msg import Parameter, ParameterValue, ParameterType
    from rcl_interfaces.srv import SetParameters
    import rclpy
    cli = client.node.create_client(SetParameters, '/enet_segmentation/set_parameters')
    assert cli.wait_for_service(timeout_sec=10)

    def set_param(name, value):
        if isinstance(value, float):
            v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        fut = cli.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=v)]))
        deadline = time.monotonic() + 10
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        return fut.result().results[0]

    assert not set_param('overlay_alpha', 1.5).successful
    bad = set_param('color_order', 'xyz')
    assert not bad.successful and 'rgb or bgr' in bad.reason
    assert not set_param('model_path', '/x').successful  # read-only
    assert set_param('overlay_alpha', 0.4).successful
    del rclpy


def test_latest_frame_only(ros, tmp_path_factory):
    """Frames arrive much faster than inference: latency stays bounded, drops counted."""
    from conftest import make_weights
    slow = make_weights(tmp_path_factory.mktemp('slow') / 'slow.pt', input_size=(360, 480))
    with NodeProcess({'model_path': str(slow), 'backend': 'eager', 'device': 'cpu',
                      'precision': 'fp32'}, ros_args=['-r', '__ns:=/fast']) as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/fast', name='fast_client')
        try:
            c.wait_for_node()
            img = np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)
            # one frame first to measure a single inference end to end. It is best effort:
            # one lost right after discovery is never counted (no sequence number before
            # it), so send until one is answered; the node counts those from that one on
            probes = []
            while not probes or not c.wait('mask', 1, 5 if len(probes) < 5 else 20):
                assert len(probes) < 6, 'none of six frames answered'
                probes.append(stamp_key(c.publish(img).header))
            single = c.latencies()[0]
            # the frames the node can account for, less the last one after the burst
            n = len(probes) - probes.index(c.received['mask'].stamps[0]) - 1 + 80
            for _ in range(80):
                c.publish(img)
                time.sleep(0.005)  # ~200 Hz, far faster than inference
            # a last frame after the burst: frames lost at the end of the burst show up as
            # a sequence gap before it. That frame is best effort too; if it is lost, the
            # next one reveals it as a gap, so send another until one arrives.
            for _ in range(5):
                time.sleep(3 * single + 0.5)
                c.publish(img)
                n += 1
                status, values = wait_diag(
                    c, lambda s, v, sent=n: int(v['frames_processed']) + int(v['frames_dropped'])
                    == sent + 1, timeout=10 * single + 3, name=status_name('/fast'))
                if int(values['frames_processed']) + int(values['frames_dropped']) == n + 1:
                    break
            processed = int(values['frames_processed'])
            dropped = int(values['frames_dropped'])
            # every frame sent is accounted for: processed or dropped
            assert processed + dropped == n + 1, str(values)
            assert int(values['frames_received']) + int(
                values['frames_dropped_before_node']) == n + 1, values
            assert dropped >= n / 2, values
            assert c.wait('mask', processed, 5) and c.received['mask'].count == processed
            # newest-frame processing: no queue builds up, so every delivered mask is at
            # most about two inferences old (one in flight, one waiting)
            lat = c.latencies()
            assert max(lat) < 3 * single + 0.5, (max(lat), single)
        finally:
            c.close()


def test_multiple_cameras_share_one_model(weights, ros):
    with NodeProcess({'model_path': str(weights), 'backend': 'eager',
                      'cameras': ['front', 'rear']},
                     ros_args=['-r', '__ns:=/multi']) as proc:
        proc.wait_ready()
        clients = [SegmentationClient(namespace=f'/multi/{ns}', name=f'c_{ns}')
                   for ns in ('front', 'rear')]
        try:
            for c in clients:
                c.wait_for_node()
            for i, c in enumerate(clients):
                c.publish(np.full((24, 32 + 8 * i, 3), 50, np.uint8), frame_id=f'cam{i}')
            for i, c in enumerate(clients):
                assert c.wait('mask', 1, 15)
                m = c.received['mask'].messages[0]
                assert (m.width, m.header.frame_id) == (32 + 8 * i, f'cam{i}')
            assert proc.log().count('listening on') == 1
        finally:
            for c in clients:
                c.close()


def test_adapted_statistics_follow_each_frames_camera_time(weights, ros):
    """adapt_statistics: the node's masks are the inference core's with the statistics
    adapting to the frames' header stamps (one observed per second), and differ from the
    trained statistics' masks; diagnostics say how many frames were observed."""
    from builtin_interfaces.msg import Time
    rng = np.random.default_rng(5)
    frames = [np.clip(rng.normal(60, 50, (48, 64, 3)), 0, 255).astype(np.uint8)
              for _ in range(6)]
    stamps = [Time(sec=100 + i // 2, nanosec=500_000_000 * (i % 2)) for i in range(6)]
    # reliable input: every frame must reach the node, the first one right after discovery
    # too (best effort lost it once in fresh-clone CI), since each one moves the statistics
    with serving({'model_path': str(weights), 'device': 'cpu', 'precision': 'fp32',
                  'backend': 'eager', 'adapt_statistics': True,
                  'input_reliability': 'reliable'}, '/adapt', reliable_input=True) as (proc, c):
        for i, (f, t) in enumerate(zip(frames, stamps)):
            c.publish(f, stamp=t)
            assert c.wait('mask', i + 1, 15), proc.log()
        status, values = wait_diag(c, lambda s, v: int(v['frames_processed']) == 6,
                                   name=status_name('/adapt'))
        got = [np.frombuffer(bytes(m.data), np.uint8).reshape(48, 64)
               for m in c.received['mask'].messages]
    assert values['statistics'].startswith('adapting to this camera: 3 frames observed')
    seg = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    want = [seg.segment_with_confidence(f, 'rgb', False, 'image',
                                        t.sec + t.nanosec * 1e-9).labels
            for f, t in zip(frames, stamps)]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    trained = Segmenter(weights, 'cpu', 'fp32', 'eager')
    assert not all(np.array_equal(a, trained.segment(f)[0]) for a, f in zip(got, frames))


@pytest.mark.parametrize('transport', [{'image_transport': 'compressed'},
                                       {'input_compressed': True}])
def test_compressed_input(weights, ros, transport):
    """image_transport:=compressed subscribes image/compressed; the deprecated
    input_compressed still does, with one warning."""
    from sensor_msgs.msg import CompressedImage
    # reliable input: the count of masks must not depend on best-effort delivery of the
    # first frames right after discovery (a flake seen in CI)
    with NodeProcess({'model_path': str(weights), 'backend': 'eager', **transport,
                      'input_reliability': 'reliable'}, ros_args=['-r', '__ns:=/comp']) as proc:
        proc.wait_ready()
        assert proc.log().count('input_compressed is deprecated') == \
            (1 if 'input_compressed' in transport else 0)
        c = SegmentationClient(namespace='/comp', compressed=True, name='comp_client',
                               reliable_input=True)
        try:
            c.wait_for_node()
            img = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
            for fmt, ext in (('jpeg', '.jpg'), ('png', '.png')):
                msg = CompressedImage(format=fmt, data=cv2.imencode(ext, img)[1].tobytes())
                c.publish(msg=msg)
                time.sleep(0.3)
            c.publish(msg=CompressedImage(format='jpeg', data=b'not a jpeg'))
            time.sleep(0.3)
            for ext in ('.jpg', '.webp'):  # small streams whose headers claim huge images
                c.publish(msg=CompressedImage(format='jpeg', data=decompression_bomb(ext)))
                time.sleep(0.3)
            c.publish(msg=CompressedImage(format='png', data=cv2.imencode('.png', img)[1]
                                          .tobytes()))
            assert c.wait('mask', 3, 15)
            assert all((m.width, m.height) == (61, 45) for m in c.received['mask'].messages)
            status, values = wait_diag(c, lambda s, v: int(v['frames_rejected']) == 3,
                                       name=status_name('/comp'))
            assert int(values['frames_rejected']) == 3
            assert '12000x12000 (from its header) exceeds' in values['last_error']
            assert status.level == status.WARN
            assert proc.proc.poll() is None
        finally:
            c.close()


def test_mask_compressed_decodes_to_the_mask(weights, ros):
    """segmentation/mask/compressed: image_transport's PNG of each mask, decoding to exactly
    segmentation/mask with the same header."""
    with serving({'model_path': str(weights), 'backend': 'eager',
                  'input_reliability': 'reliable'}, '/rec', reliable_input=True,
                 outputs=('mask', 'mask_compressed')) as (proc, c):
        rng = np.random.default_rng(4)
        for k in range(3):
            c.publish(rng.integers(0, 256, (45 + k, 61, 3), dtype=np.uint8),
                      frame_id=f'cam{k}')
            assert c.wait('mask_compressed', k + 1, 10) and c.wait('mask', k + 1, 10)
    masks = {(m.header.stamp.sec, m.header.stamp.nanosec): m
             for m in c.received['mask'].messages}
    for png in c.received['mask_compressed'].messages:
        mask = masks[(png.header.stamp.sec, png.header.stamp.nanosec)]
        assert png.format == 'mono8; png compressed '
        assert png.header.frame_id == mask.header.frame_id
        decoded = cv2.imdecode(np.frombuffer(png.data, np.uint8), cv2.IMREAD_UNCHANGED)
        raw = np.frombuffer(mask.data, np.uint8).reshape(mask.height, mask.width)
        np.testing.assert_array_equal(decoded, raw)


def test_launch_managed_autostart_serves_a_driver_s_topics(weights, ros, tmp_path):
    """What segmentation.launch.py managed:=true image:=/camera/image_raw starts (its
    node_spec, run as launch_ros would: the params file, then the overrides): the
    lifecycle node brings itself to active with no transition from outside, pairs
    /camera/camera_info with the image, and runs with the shipped FastDDS profile."""
    import yaml
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from enet_ros.launch_args import node_spec
    from conftest import REPO
    spec = node_spec({'managed': 'true', 'image': '/camera/image_raw',
                      'model_path': str(weights), 'backend': 'eager'})
    assert spec['executable'] == 'managed_segmentation_node'
    overrides = tmp_path / 'overrides.yaml'
    overrides.write_text(yaml.safe_dump({'/**': {'ros__parameters': spec['parameters']}}))
    params = yaml.safe_load((REPO / 'config' / 'segmentation.yaml').read_text())
    remaps = [a for old, new in spec['remappings'] for a in ('-r', f'{old}:={new}')]
    env = {k: v for k, v in os.environ.items() if 'PROFILES_FILE' not in k}
    with NodeProcess(params['/**']['ros__parameters'], env={**env, **spec['env']},
                     ros_args=['--params-file', str(overrides), '-r', '__ns:=/car'] + remaps,
                     module=f'enet_ros.{spec["executable"]}') as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/car', name='driver', outputs=('mask',))
        driver = c.node.create_publisher(Image, '/camera/image_raw', qos_profile_sensor_data)
        info_pub = c.node.create_publisher(CameraInfo, '/camera/camera_info', 10)
        infos = []
        c.node.create_subscription(CameraInfo, 'segmentation/camera_info', infos.append, 10)
        get = c.node.create_client(GetState, '/car/enet_segmentation/get_state')
        c.pub = driver  # the client publishes as the camera driver does
        try:
            c.wait_for_node()
            assert get.wait_for_service(timeout_sec=30)
            future = get.call_async(GetState.Request())
            deadline = time.monotonic() + 30
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert future.result().current_state.id == State.PRIMARY_STATE_ACTIVE
            info_pub.publish(CameraInfo(width=96, height=64, k=[90.0, 0, 48, 0, 90, 32, 0,
                                                                 0, 1]))
            time.sleep(0.5)
            for _ in range(3):
                before = c.received['mask'].count
                c.publish(np.zeros((64, 96, 3), np.uint8))
                c.wait('mask', before + 1, 10)
            assert c.received['mask'].count >= 2  # best effort, as a driver publishes
            deadline = time.monotonic() + 5
            while not infos and time.monotonic() < deadline:
                time.sleep(0.05)
            assert infos and list(infos[-1].k) == [90.0, 0, 48, 0, 90, 32, 0, 0, 1]
        finally:
            c.close()
        log = proc.log()
    assert 'autostart: configured and active' in log
    assert 'camera info /camera/camera_info' in log
    assert 'FastDDS' not in log, log  # the profile was set for the node
    assert 'Traceback' not in log, log


@contextlib.contextmanager
def small_filesystem(path: Path, options: str):
    """A tmpfs mounted at ``path`` (``options``: e.g. size=1M, or ro): a disk that fills, or
    one that cannot be written, for real. Needs root, as CI and the dev machines run."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f'cannot mount a tmpfs for this test (root needed): {done.stderr}')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=False)


@pytest.mark.parametrize('disk', ['fills during the compile', 'read-only'])
def test_compile_cache_on_a_full_or_read_only_disk(weights, ros, tmp_path, disk):
    """The compile cache on a 1 MB disk that fills while the first start compiles, or on a
    read-only one: one warning line naming the cache and what to do, the network compiled
    into a temporary folder, the node serving masks equal to the eager network's, no
    traceback; nothing half-written left in the cache for the next start."""
    options = 'size=1M' if disk.startswith('fills') else 'ro,size=1M'
    with small_filesystem(tmp_path / 'cache', options) as cache:
        env = {**os.environ, 'ENET_ROS_CACHE': str(cache)}
        env.pop('TORCHINDUCTOR_CACHE_DIR', None)
        with serving({'model_path': str(weights), 'backend': 'compile', 'precision': 'fp32',
                      'input_reliability': 'reliable'}, '/fullcache', env=env,
                     reliable_input=True) as (proc, c):
            img = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            c.publish(img)
            assert c.wait('mask', 1, 30), proc.log()
            log = proc.log()
        left = sorted(str(p.relative_to(cache)) for p in cache.rglob('*.pt2*'))
    warned = [line for line in log.splitlines() if f'cache {cache}' in line]
    want = 'ran out of disk space' if disk.startswith('fills') else 'is not writable'
    assert len(warned) == 1 and want in warned[0] and 'ENET_ROS_CACHE' in warned[0], log
    assert 'Traceback' not in log and 'listening on' in log, log
    assert left == [], left  # no package, whole or partial, for the next start to load
    mask = np.frombuffer(c.received['mask'].messages[0].data, np.uint8).reshape(64, 96)
    eager = Segmenter(weights, 'cpu', 'fp32', 'eager').segment(img)[0]
    assert (mask == eager).mean() > 0.999


def test_fastdds_default_segment_is_warned_about(tmp_path):
    from enet_ros.dds import profiles_variable, segment_warning
    assert 'default 0.5 MB shared-memory segment' in segment_warning({})
    assert 'config/fastdds.xml in every process' in segment_warning({})
    shipped = str(Path(__file__).parents[1] / 'config' / 'fastdds.xml')
    assert segment_warning({profiles_variable(): shipped}) is None
    assert segment_warning({'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'}) is None
    bare = tmp_path / 'bare.xml'
    bare.write_text('<profiles/>')
    assert 'sets no shared-memory segment_size' in segment_warning(
        {profiles_variable(): str(bare)})


@pytest.mark.parametrize('params,message', [
    ({'model_path': '/nonexistent/enet.pt'}, 'model file /nonexistent/enet.pt does not exist'),
    ({'device': 'tpu'}, "parameter device='tpu' is not one of"),
    ({'device': 'cuda'}, 'CUDA is not available'),
    ({'corrupt': True}, 'truncated or corrupt'),
    ({'nan': True}, 'non-finite weights (NaN or inf)'),
    ({'training': True}, 'is a training checkpoint'),
])
def test_startup_failures_exit_nonzero(weights, tmp_path, params, message):
    import torch
    from enet_ros.checkpoint import load_checkpoint, save_checkpoint
    from training import run_checkpoint
    if params.get('device') == 'cuda' and torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    if params.pop('corrupt', False):
        bad = tmp_path / 'corrupt.pt'
        bad.write_bytes(weights.read_bytes()[:1000])
        params['model_path'] = str(bad)
    if params.pop('nan', False):
        model, meta = load_checkpoint(weights)
        with torch.no_grad():
            model.encoder.initial.conv.weight.fill_(float('nan'))
        save_checkpoint(tmp_path / 'nan.pt', model, meta)
        params['model_path'] = str(tmp_path / 'nan.pt')
    if params.pop('training', False):
        model, _ = load_checkpoint(weights)
        params['model_path'] = str(run_checkpoint.save(tmp_path, {
            'model': model.state_dict(), 'optimizer': {}, 'lr_scheduler': {}, 'epoch': 0}))
    params.setdefault('model_path', str(weights))
    with NodeProcess(params) as proc:
        rc = proc.proc.wait(60)
        log = proc.log()
    assert rc != 0
    assert message in log
    assert 'Traceback' not in log
    assert len([line for line in log.splitlines() if 'start-up failed' in line]) == 1


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_clean_shutdown(weights, ros, sig):
    """Stopped while frames stream in: exit 0, no traceback, no error from the inference
    thread publishing into a context that is already shut down."""
    with serving({'model_path': str(weights), 'backend': 'eager'}, '/shutdown') as (proc, c):
        c.drive(itertools.repeat(np.zeros((64, 96, 3), np.uint8), 20), pace=100, timeout=0)
        t = time.monotonic()
        rc = proc.stop(sig)
        stopped_in = time.monotonic() - t
        log = proc.log()
    assert rc == 0, log
    assert stopped_in < 5, stopped_in
    assert 'Traceback' not in log
    assert 'inference failed' not in log and 'context is invalid' not in log, log
    assert 'deprecated' not in log, log  # the profile variable this distro's Fast DDS reads


TOOL_THAT_DIES = """
import os, sys
from pathlib import Path
from enet_ros.tools.client import NodeProcess
node = NodeProcess({'model_path': sys.argv[1], 'backend': 'eager'}, log_path=Path(sys.argv[2]))
node.wait_ready()
print(node.proc.pid, os.getsid(node.proc.pid), os.getsid(0), flush=True)
os._exit(0)  # gone without stopping the node, as a killed tool is
"""


def test_a_node_a_tool_started_is_its_own_session_and_stops_once_the_tool_is_gone(
        weights, tmp_path):
    """The tools start the node as a session of its own (the CPU share of a session where
    the kernel groups by session); no hang-up or Ctrl-C of the terminal reaches it there,
    so it stops by itself once the tool that started it has exited."""
    log = tmp_path / 'node.log'
    tool = run_python('-c', TOOL_THAT_DIES, weights, log, timeout=120)
    assert tool.returncode == 0, tool.stderr
    pid, node_session, tool_session = map(int, tool.stdout.split())
    assert node_session == pid != tool_session
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
        except OSError:
            break  # exited and reaped
        if state == 'Z':
            break  # exited, not yet reaped by whoever adopted it
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f'the node outlived its tool by 15 s:\n{log.read_text()}')
    text = log.read_text()
    assert 'the tool that started this node has exited: stopping' in text, text
    assert 'Traceback' not in text, text


def stop_inside_the_compile(proc) -> None:
    """SIGTERM two seconds into the compile: it ends promptly, exit code 0, no traceback."""
    deadline = time.monotonic() + 60
    while 'compiling' not in proc.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'compiling' in proc.log(), proc.log()
    time.sleep(2.0)  # well inside the compile (about 20 s here)
    t = time.monotonic()
    rc = proc.stop(signal.SIGTERM, timeout=20)
    stopped_in = time.monotonic() - t
    log = proc.log()
    assert rc == 0, log
    assert stopped_in < 10, (stopped_in, log)
    assert 'Traceback' not in log and 'RCLError' not in log, log


COMPILE_FROM_SCRATCH = {'backend': 'compile', 'device': 'cpu', 'precision': 'fp32'}


def test_sigterm_during_the_first_compile_ends_it(weights, ros, tmp_path):
    env = {**os.environ, 'ENET_ROS_CACHE': str(tmp_path / 'cache')}  # nothing cached
    with NodeProcess({'model_path': str(weights), **COMPILE_FROM_SCRATCH}, env=env) as proc:
        stop_inside_the_compile(proc)


def test_sigterm_during_a_managed_configure_ends_it(weights, ros, tmp_path):
    """A managed node compiles inside its configure service callback, on the executor."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    env = {**os.environ, 'ENET_ROS_CACHE': str(tmp_path / 'cache')}  # nothing cached
    with NodeProcess({'model_path': str(weights), **COMPILE_FROM_SCRATCH}, env=env,
                     ros_args=['-r', '__ns:=/configuring'],
                     module='enet_ros.managed_segmentation_node') as proc:
        c = SegmentationClient(namespace='/configuring', name='configure_client')
        try:
            change = c.node.create_client(ChangeState,
                                          '/configuring/enet_segmentation/change_state')
            assert change.wait_for_service(timeout_sec=60), proc.log()
            change.call_async(ChangeState.Request(
                transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
            stop_inside_the_compile(proc)
        finally:
            c.close()


def test_no_mask_out_turns_diagnostics_to_error(weights, ros):
    """Frames keep arriving but every one is rejected: WARN, then ERROR after
    stale_timeout_s, with the reason; never OK."""
    with serving({'model_path': str(weights), 'backend': 'eager', 'stale_timeout_s': 2.0},
                 '/silent') as (proc, c):
        bad = np.zeros((8, 8, 2), np.uint8)
        levels = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            c.publish(bad, encoding='16UC1')  # a depth image on the camera topic
            status, _ = diag_values(c, status_name('/silent'))
            if status is not None:
                levels.append((status.level, status.message))
            time.sleep(0.1)
        status, values = wait_diag(c, lambda s, v: s.level == s.ERROR,
                                   name=status_name('/silent'))
    assert status.level == status.ERROR, levels
    assert 'no mask published' in status.message
    assert "unsupported encoding '16UC1'" in status.message
    assert all(level != status.OK for level, _ in levels), levels


def test_frames_lost_before_the_node_are_counted_from_sequence_gaps(weights, tmp_path):
    """rclpy hands the callback the message info only if it asks for it; the gaps in the
    publication sequence numbers are how frames superseded inside DDS get counted."""
    out = run_python(Path(__file__).with_name('inspect_node.py'), weights, 'sequence_gaps',
                     timeout=120)
    assert out.returncode == 0, out.stderr
    totals = json.loads(out.stdout.splitlines()[-1])
    received, unseen = totals['frames_received'], totals['frames_dropped_before_node']
    dropped = totals['frames_dropped']
    assert (received, unseen) == (4, 3)
    assert dropped >= unseen  # plus any superseded in the mailbox by the next on_frame


def test_two_publishers_on_one_topic_are_not_counted_as_drops(weights, ros):
    """Sequence numbers of two publishers interleave (each counts on its own); the node
    must not read the jumps between them as frames lost before it."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    # reliable input, and the second publisher matched before it publishes: every frame
    # must arrive, so that any count of drops could only be inferred
    with NodeProcess({'model_path': str(weights), 'backend': 'eager',
                      'input_reliability': 'reliable'},
                     ros_args=['-r', '__ns:=/twopub']) as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/twopub', name='twopub_client', reliable_input=True)
        second = c.node.create_publisher(Image, 'image', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE))
        try:
            c.wait_for_node()
            img = np.zeros((64, 96, 3), np.uint8)
            for _ in range(12):  # the first publisher runs ahead: sequence 1..12
                c.publish(img)
                time.sleep(0.05)
            deadline = time.monotonic() + 10.0
            while second.get_subscription_count() < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the node's side of the match too
            for _ in range(8):  # then both: 13, 1, 14, 2, ...
                c.publish(img)
                time.sleep(0.05)
                second.publish(Image(height=64, width=96, encoding='rgb8', step=96 * 3,
                                     data=img.tobytes()))
                time.sleep(0.05)
            status, values = wait_diag(c, lambda s, v: int(v['frames_received']) >= 28,
                                       name=status_name('/twopub'))
        finally:
            c.close()
    # Transport may still lose frames on a busy host (fresh-clone CI saw 27, and once 22,
    # of 28: the reader's history keeps the newest frame): with two publishers such a loss
    # cannot be told from interleaving, and is not counted. The node before the fix counted
    # a dozen drops at each jump back to the second publisher's sequence, so a few of the
    # 16 interleaved frames suffice.
    assert int(values['frames_received']) >= 18, values
    assert values['frames_dropped_before_node'] == '0', {
        k: values[k] for k in ('frames_received', 'frames_dropped', 'frames_dropped_before_node')}


def test_fusion_outputs_class_map_confidence_and_camera_info(weights, ros):
    """What a fusion stack reads: the class map (latched, for late subscribers), a
    confidence image and the camera info, both with the mask's stamp and frame."""
    import json
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import String
    with NodeProcess({'model_path': str(weights), 'backend': 'eager'},
                     ros_args=['-r', '__ns:=/fusion']) as proc:
        proc.wait_ready()
        time.sleep(1.0)  # the class map went out before anyone listened
        c = SegmentationClient(namespace='/fusion', name='fusion_client', reliable_input=True,
                               outputs=('mask', 'confidence'))
        got = {'class_info': [], 'camera_info': []}
        c.node.create_subscription(String, 'segmentation/class_info',
                                   lambda m: got['class_info'].append(m), QoSProfile(
                                       depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        c.node.create_subscription(CameraInfo, 'segmentation/camera_info',
                                   lambda m: got['camera_info'].append(m), 10)
        info_pub = c.node.create_publisher(CameraInfo, 'camera_info', 10)
        try:
            c.wait_for_node()
            deadline = time.monotonic() + 10
            while not got['class_info'] and time.monotonic() < deadline:
                time.sleep(0.05)
            classes = json.loads(got['class_info'][0].data)
            assert [k['name'] for k in classes['classes']] == list(CAMVID_NAMES)
            assert classes['classes'][3]['color'] == list(CAMVID_PALETTE[3])
            assert classes['ignore_id'] == 255
            info_pub.publish(CameraInfo(width=96, height=64, k=[100.0, 0, 48, 0, 100, 32, 0,
                                                                  0, 1]))
            time.sleep(0.5)
            img = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            sent = c.publish(img, frame_id='cam_fusion')
            assert c.wait('confidence', 1, 10) and c.wait('mask', 1, 10)
            deadline = time.monotonic() + 5
            while not got['camera_info'] and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            c.close()
    mask, conf = c.received['mask'].messages[-1], c.received['confidence'].messages[-1]
    info = got['camera_info'][-1]
    for m in (mask, conf, info):
        assert (m.header.stamp, m.header.frame_id) == (sent.header.stamp, 'cam_fusion')
    assert (conf.encoding, conf.width, conf.height) == ('mono8', 96, 64)
    values = np.frombuffer(conf.data, np.uint8)
    assert values.min() >= 255 // len(CAMVID_NAMES)  # a softmax maximum is at least 1/C
    assert list(info.k) == [100.0, 0, 48, 0, 100, 32, 0, 0, 1]


def test_message_age_follows_sim_time(weights, ros):
    """Under use_sim_time the message age is measured on /clock, not the wall clock."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock
    with NodeProcess({'model_path': str(weights), 'backend': 'eager', 'use_sim_time': True},
                     ros_args=['-r', '__ns:=/sim']) as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/sim', name='sim_client', reliable_input=True)
        clock = c.node.create_publisher(Clock, '/clock', 10)
        try:
            c.wait_for_node()
            img = np.zeros((64, 96, 3), np.uint8)
            sim = 1000.0  # seconds: nowhere near the wall clock
            for _ in range(30):
                sim += 0.1
                clock.publish(Clock(clock=Time(sec=int(sim), nanosec=int(sim % 1 * 1e9))))
                stamp = sim - 0.2  # frames 200 ms old in simulated time
                c.publish(img, stamp=Time(sec=int(stamp), nanosec=int(stamp % 1 * 1e9)))
                time.sleep(0.1)
            status, values = wait_diag(c, lambda s, v: v.get('message_age_ms_mean') not in
                                       (None, 'nan'), name=status_name('/sim'))
        finally:
            c.close()
    age = float(values['message_age_ms_mean'])
    assert 150 <= age <= 400, age  # 200 ms plus at most one clock tick, not 1.8e12 ms


def test_managed_node_through_every_lifecycle_transition(weights, ros):
    """configure loads, activate serves, deactivate stops without freeing, activate serves
    again, cleanup frees, shutdown finalises: all driven through the lifecycle services
    from this process."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    with NodeProcess({'model_path': str(weights), 'backend': 'eager'},
                     ros_args=['-r', '__ns:=/managed'],
                     module='enet_ros.managed_segmentation_node') as proc:
        c = SegmentationClient(namespace='/managed', name='managed_client', reliable_input=True)
        change = c.node.create_client(ChangeState, '/managed/enet_segmentation/change_state')
        get = c.node.create_client(GetState, '/managed/enet_segmentation/get_state')

        def call(client, request, timeout=120):
            assert client.wait_for_service(timeout_sec=60), proc.log()
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.05)
            return future.result()

        def transition(tid):
            assert call(change, ChangeState.Request(transition=Transition(id=tid))).success, \
                proc.log()
            return call(get, GetState.Request()).current_state.id

        def masks_for_one_frame(timeout):
            before = c.received['mask'].count
            c.publish(np.zeros((64, 96, 3), np.uint8))
            return c.wait('mask', before + 1, timeout)

        try:
            # a request sent as the service is discovered can go unanswered (the server
            # not yet matched to the client's reply reader): asking the state is safe to
            # repeat, so the first one is asked until answered
            first = None
            for _ in range(12):
                first = first or call(get, GetState.Request(), timeout=10)
            state = first.current_state.id
            assert state == State.PRIMARY_STATE_UNCONFIGURED
            assert 'loading' not in proc.log()  # nothing loaded before configure
            assert transition(Transition.TRANSITION_CONFIGURE) == State.PRIMARY_STATE_INACTIVE
            assert 'loading' in proc.log() and c.pub.get_subscription_count() == 0
            assert transition(Transition.TRANSITION_ACTIVATE) == State.PRIMARY_STATE_ACTIVE
            c.wait_for_node()
            assert masks_for_one_frame(10)
            assert transition(Transition.TRANSITION_DEACTIVATE) == State.PRIMARY_STATE_INACTIVE
            time.sleep(0.5)
            assert c.pub.get_subscription_count() == 0
            assert not masks_for_one_frame(1.5)
            assert transition(Transition.TRANSITION_ACTIVATE) == State.PRIMARY_STATE_ACTIVE
            c.wait_for_node()
            assert masks_for_one_frame(10)  # served again, nothing reloaded
            assert proc.log().count('loading') == 1
            assert transition(Transition.TRANSITION_DEACTIVATE) == State.PRIMARY_STATE_INACTIVE
            assert transition(Transition.TRANSITION_CLEANUP) == State.PRIMARY_STATE_UNCONFIGURED
            assert transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) == \
                State.PRIMARY_STATE_FINALIZED
        finally:
            c.close()
        rc = proc.stop(signal.SIGINT)
        log = proc.log()
    assert rc == 0 and 'Traceback' not in log, log


def test_blinded_or_noisy_camera_turns_diagnostics_to_warn(ros):
    """The shipped weights' model card holds the held-out confidence and class mix: a street
    frame is OK, a black frame (covered lens) and a noise frame (broken sensor) WARN."""
    street = reference_frame()  # a CamVid frame shipped with the package, RGB
    frames = {'street': street, 'black': np.zeros_like(street),
              'noise': np.random.default_rng(0).integers(0, 256, street.shape, np.uint8)}
    name = status_name('/watch')
    found = {}
    # latency is not under test: a slow moment on a loaded machine must not make it WARN
    # (nor the no-output warning, which waits max(latency_budget_ms, 1 s))
    with serving({'backend': 'eager', 'device': 'cpu', 'latency_budget_ms': 10000.0,
                  'stale_timeout_s': 60.0}, '/watch') as (proc, c):
        for kind, frame in frames.items():
            # a window holding only this kind's frames: the second window after the switch
            # in which masks were published, however long a loaded machine takes to get there
            deadline, windows = time.monotonic() + 120.0, 0
            first = len(c.statuses(name))
            while time.monotonic() < deadline and windows < 2:
                c.publish(frame, 'rgb8')
                time.sleep(0.1)
                windows = sum(float(v.get('output_fps', 0)) > 0
                              for v in c.statuses(name)[first:])
            assert windows == 2, f'{kind}: no masks for two diagnostics windows'
            found[kind] = diag_values(c, name)
    (street_status, street_values) = found['street']
    assert street_status.level == street_status.OK, street_status.message
    assert 'held-out drives' in street_values['heldout_reference']
    assert 'held-out class IoU: 0001TP' in street_values['model_card'], street_values
    black, _ = found['black']
    assert black.level == black.WARN and 'mean confidence' in black.message, black.message
    noise, noise_values = found['noise']
    assert noise.level == noise.WARN and 'class mix' in noise.message, noise.message
    assert float(noise_values['class_mix_distance']) > 0.6


def test_humble_rclpy_fallback_serves_with_the_message_alone(weights, ros):
    """On Humble's rclpy (stand-in: callbacks get the message alone) the node serves every
    frame and says in diagnostics that drops before the node cannot be counted."""
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    # reliable input: each mask is awaited, so no frame may be lost after discovery. A
    # frame sent while the node's reader is still matching can be (one was, on Kilted), so
    # send one until it is answered and count every frame from there
    with serving({'model_path': str(weights), 'backend': 'eager',
                  'input_reliability': 'reliable'}, '/humble', env=env,
                 module='humble_rclpy', reliable_input=True) as (proc, c):
        for _ in range(6):
            c.publish(np.zeros((48, 64, 3), np.uint8))
            if c.wait('mask', 1, 5):
                break
        assert c.received['mask'].count == 1, proc.log()
        c.drive([np.full((48, 64, 3), 40 * i, np.uint8) for i in range(1, 4)])  # lockstep
        assert c.received['mask'].count == 4, proc.log()
        _, values = wait_diag(c, lambda s, v: v.get('frames_processed') == '4',
                              name=status_name('/humble'))
        assert proc.proc.poll() is None, proc.log()
    assert values['frames_processed'] == '4'
    assert values['frames_dropped_before_node'].startswith('unknown'), values


def test_late_subscriber_gets_label_info_and_class_info(weights, ros, vision_msgs_env):
    """With vision_msgs importable (built by the test from its documented fields) the node
    publishes vision_msgs/LabelInfo, latched: a subscriber in another process that starts
    after the node receives it and the JSON class map, each with every class."""
    env = {**os.environ, **vision_msgs_env}
    with NodeProcess({'model_path': str(weights), 'backend': 'eager'}, env=env,
                     ros_args=['-r', '__ns:=/labels']) as proc:
        proc.wait_ready()
        time.sleep(1.0)  # the subscriber comes late: it relies on transient local
        listener_path = os.pathsep.join([str(Path(__file__).parent), env['PYTHONPATH']])
        done = subprocess.run([sys.executable, '-m', 'label_info_listener', '/labels'],
                              env=ros_env({**env, 'PYTHONPATH': listener_path}),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    expected = [[i, n] for i, n in enumerate(CAMVID_NAMES)]
    assert got['label_info']['class_map'] == expected, (got, proc.log())
    assert [[c['id'], c['name']] for c in got['class_info']['classes']] == expected
