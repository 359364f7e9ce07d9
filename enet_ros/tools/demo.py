"""The one-command demo: start the node, play frames into it over DDS, record its outputs.

    python -m enet_ros.tools.demo [--input FOLDER_OR_VIDEO] [--output demo_output]

With no ``--input`` it plays the CamVid frames embedded in the package. It writes
``overlay_NNNN.png`` and ``color_mask_NNNN.png`` (the node's outputs, each with a legend of
the classes and its colours: the overlay's told apart, ``colors.distinct_palette``; the
colour mask's the weights' palette), ``legend_overlay.png``, ``legend.png``,
``summary.json`` and ``summary.txt`` (model, precision, backend and compile time;
end-to-end latency publish -> mask receipt, frames sent/received/dropped, the node's own
stage timings from /diagnostics) into the output folder, and exits 0 when every frame
produced a mask or was counted as dropped by the node.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
import sys
import time

import cv2
import numpy as np

from enet_ros.checkpoint import load_checkpoint
from enet_ros.colors import distinct_palette
from enet_ros.image_codec import IMAGE_FILE_SUFFIXES, image_to_array, stamp_key
from enet_ros.camera_stats import summarize_ms
from enet_ros.tools.client import apply_ros_env, NodeProcess, SegmentationClient
from enet_ros.options import add_model_args
from enet_ros.topics import status_name

DEMO_FRAMES = Path(__file__).resolve().parents[1] / 'demo_frames'


def load_frames(source: Path, limit: int | None) -> list[np.ndarray]:
    """BGR frames from a folder of images or a video file."""
    frames = []
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_FILE_SUFFIXES)
        for p in paths[:limit]:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f'demo: cannot read image {p}')
            frames.append(img)
    elif source.is_file():
        cap = cv2.VideoCapture(str(source))
        while limit is None or len(frames) < limit:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(img)
        cap.release()
    else:
        raise SystemExit(f'demo: {source} is neither a folder of images nor a video file')
    if not frames:
        raise SystemExit(f'demo: no frames in {source} (images: {", ".join(IMAGE_FILE_SUFFIXES)})')
    return frames


LEGENDS = {'overlay': 'legend_overlay.png', 'color_mask': 'legend.png'}


def legend(names, palette, height: int) -> np.ndarray:
    """A BGR panel ``height`` pixels high: one colour swatch and class name per row."""
    row = max(12, min(28, height // max(len(names), 1)))
    panel = np.full((max(height, row * len(names)), 170, 3), 255, np.uint8)
    for k, (name, (r, g, b)) in enumerate(zip(names, palette)):
        y = k * row
        cv2.rectangle(panel, (6, y + 3), (6 + row - 6, y + row - 3), (b, g, r), -1)
        cv2.putText(panel, name, (row + 8, y + row - 6), cv2.FONT_HERSHEY_SIMPLEX,
                    row / 40, (0, 0, 0), 1, cv2.LINE_AA)
    return panel[:height] if panel.shape[0] > height else panel


def with_legend(image: np.ndarray, panel: np.ndarray) -> np.ndarray:
    h = max(image.shape[0], panel.shape[0])
    pad = [np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)), constant_values=255)
           for a in (image, panel)]
    return np.hstack(pad)


def compile_line(log: str, backend: str) -> str:
    """What the node's log says about compiling the network."""
    for line in log.splitlines():
        if 'compiled in' in line:
            return 'compile: ' + line.split('compiled in', 1)[1].strip() + ' (first start)'
    if 'compiling the network' in log:
        return 'compile: did not finish'
    return 'compile: loaded from the cache' if backend == 'compile' else 'compile: none (eager)'


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--input', type=Path, default=DEMO_FRAMES,
                   help='folder of images or a video file (default: embedded CamVid frames)')
    p.add_argument('--output', type=Path, default=Path('demo_output'))
    p.add_argument('--rate', type=float,
                   help='frames per second, as a camera would publish them (a frame that '
                        'arrives while the network is busy replaces the waiting one: '
                        'dropped); default: each frame once the previous one is answered')
    p.add_argument('--loops', type=int, default=3, help='passes over the frames')
    p.add_argument('--limit', type=int, help='use the first N frames only')
    add_model_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = get_args(argv)
    frames = load_frames(args.input, args.limit)
    args.output.mkdir(parents=True, exist_ok=True)
    apply_ros_env()
    import rclpy
    params = {'model_path': args.weights, 'device': args.device,
              'precision': args.precision, 'backend': args.backend,
              'input_reliability': 'reliable'}
    print(f'demo: starting the node ({args.device}/{args.precision}/{args.backend}); a first '
          f'start with backend compile compiles the network once (the node logs how long)',
          flush=True)
    t0 = time.monotonic()
    with NodeProcess(params, log_path=args.output / 'node.log') as node:
        node.wait_ready(timeout=600, progress='demo')
        startup = time.monotonic() - t0
        rclpy.init()
        client = SegmentationClient(outputs=('mask', 'overlay', 'color_mask'),
                                    reliable_input=True, name='enet_demo')
        try:
            client.wait_for_node()
            print(f'demo: playing {len(frames)} frames x {args.loops} passes, '
                  f'{pace_text(args.rate)}', flush=True)
            # one frame in flight: the next once every output of this one has arrived
            headers = client.drive(frames * args.loops, pace=args.rate, encoding='bgr8',
                                   answers=('mask', 'overlay', 'color_mask'))
            sent = [(k // len(frames), k % len(frames),
                     stamp_key(header)) for k, header in enumerate(headers)]
            time.sleep(1.5)  # one more diagnostics period
            result = _report(args, client, frames, sent, startup, node.log())
        finally:
            client.close()
            rclpy.try_shutdown()
    return result


def pace_text(rate: float | None) -> str:
    return f'at {rate:g} Hz' if rate else "each once the previous frame's outputs arrived"


def _report(args, client, frames, sent, startup, node_log) -> int:
    _, meta = load_checkpoint(args.weights)
    # each image with the legend of its own colours: the overlay's are told apart, the
    # colour mask keeps the weights' palette
    colors = {'overlay': distinct_palette(meta.num_classes), 'color_mask': meta.palette}
    written = 0
    missing = []  # frame indices without an overlay
    for kind in ('overlay', 'color_mask'):
        panel = None
        by_stamp = {stamp_key(m.header): m
                    for m in client.received[kind].messages}
        latest = {}  # frame index -> its newest output (the node may drop some frames)
        for _, i, stamp in sent:
            if stamp in by_stamp:
                latest[i] = by_stamp[stamp]
        if kind == 'overlay':
            missing = [i for i in range(len(frames)) if i not in latest]
        for i, m in sorted(latest.items()):
            img, order = image_to_array(m)  # as published: rgb8 or bgr8, any step
            if order == 'rgb':
                img = img[:, :, ::-1]
            if panel is None:
                panel = legend(meta.class_names, colors[kind], m.height)
                cv2.imwrite(str(args.output / LEGENDS[kind]), panel)
            cv2.imwrite(str(args.output / f'{kind}_{i:04d}.png'), with_legend(img, panel))
            written += kind == 'overlay'
    windows = client.statuses(status_name())
    # the figures come from the windows that saw frames (the last ones after the frames
    # stopped are empty); the counters are totals, so the newest window has them all
    busy = [w for w in windows if float(w.get('output_fps', 0) or 0) > 0]
    seen = busy[-1] if busy else (windows[-1] if windows else {})
    totals = windows[-1] if windows else {}
    stage_ms = {}
    for stage in ('preprocess', 'inference', 'postprocess'):
        v = [float(w[f'{stage}_ms_mean']) for w in busy
             if w.get(f'{stage}_ms_mean', 'nan') != 'nan']
        stage_ms[stage] = float(np.mean(v)) if v else float('nan')
    received = client.received['mask'].count
    dropped = int(totals.get('frames_dropped', 0))
    backend = seen.get('backend', args.backend)  # the backend the node chose
    summary = {
        'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        'machine': f'{platform.node()} {platform.machine()} {platform.processor()}',
        'command': ' '.join(sys.argv),
        'input': str(args.input), 'frames': len(frames), 'passes': args.loops,
        'rate_hz': args.rate, 'frames_sent': len(sent), 'masks_received': received,
        'frames_dropped_by_node': dropped, 'overlays_written': written,
        'frames_without_overlay': missing,
        'model': f'{seen.get("model", "?")} on {seen.get("device", "?")} '
                 f'{seen.get("precision", "?")} {backend}',
        'threads': seen.get('threads', '?'),
        'node_startup_s': round(startup, 2), 'compile': compile_line(node_log, backend),
        'end_to_end_latency': summarize_ms(client.latencies('mask')),
        'node_stage_ms_mean': stage_ms,
        'node_diagnostics': seen,
    }
    (args.output / 'summary.json').write_text(json.dumps(summary, indent=2))
    lines = summary_lines(summary, args.output)
    (args.output / 'summary.txt').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    for i in missing:
        print(f'demo: no overlay for frame {i}: its mask never arrived in any of the '
              f'{args.loops} passes (dropped by the node each time, or lost)', file=sys.stderr)
    if received == 0 or received + dropped < len(sent):
        print(f'demo: {len(sent) - received - dropped} frames unaccounted for', file=sys.stderr)
        return 1
    return 0


def summary_lines(s: dict, output: Path) -> list[str]:
    """summary.txt, every figure read from the summary.json record."""
    lat, stages = s['end_to_end_latency'], s['node_stage_ms_mean']
    lines = [f'enet_ros demo, {s["date"]}',
             f'model: {s["model"]}; threads: {s["threads"]}',
             f'node start-up (load + warm-up): {s["node_startup_s"]:.1f} s; {s["compile"]}',
             f'frames sent {s["frames_sent"]} ({s["frames"]} frames x {s["passes"]} passes) '
             f'{pace_text(s["rate_hz"])}, masks received {s["masks_received"]}, dropped by the '
             f'node {s["frames_dropped_by_node"]}']
    if s['frames_dropped_by_node'] and s['rate_hz']:
        lines.append(f'  (the node segments only the newest frame: a frame that arrives while '
                     f'the network is busy with the previous one replaces it; here inference '
                     f'took {stages["inference"]:.0f} ms a frame against a frame every '
                     f'{1000 / s["rate_hz"]:.0f} ms)')
    elif s['frames_dropped_by_node']:
        lines.append('  (frames lost on the way in: the node counts them from the gaps in '
                     "the publisher's sequence numbers)")
    lines += ['end-to-end latency (publish -> mask received): ' + (
                  f'mean {lat["mean_ms"]:.1f} ms, median {lat["median_ms"]:.1f}, '
                  f'p95 {lat["p95_ms"]:.1f}, max {lat["max_ms"]:.1f}' if lat['mean_ms'] else
                  'none'),
              'node stages (mean of per-second means): ' + ', '.join(
                  f'{k} {v:.1f} ms' for k, v in stages.items()),
              f'wrote {s["overlays_written"]} overlays and colour masks (each with the '
              f"legend of its colours), legend_overlay.png, legend.png (the colour mask's) "
              f'and summary.json to {output}/']
    return lines


if __name__ == '__main__':
    sys.exit(main())
