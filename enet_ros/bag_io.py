"""rosbag2 recordings (sqlite3 .db3 or MCAP) through the pure-Python ``rosbags`` library.

No rclpy here: evaluation runs offline on machines without ROS 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enet_ros.bag_salvage import SalvageReader
from enet_ros.image_codec import array_to_fields, MASK_PNG_FORMAT, mask_to_png, stamp_ns

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')


class BagError(RuntimeError):
    """A bag that cannot be used as asked; the message says why and what the bag holds."""


def typestore():
    from rosbags.typesys import get_typestore, Stores
    return get_typestore(Stores.ROS2_JAZZY)


def bag_path(path: str | Path) -> Path:
    """A bag directory, or a .db3/.mcap file inside one (rosbags opens the directory)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    if path.is_file():
        if (path.parent / 'metadata.yaml').exists():
            return path.parent
        raise BagError(f'{path} is a file without metadata.yaml beside it; pass the bag '
                       f'directory rosbag2 wrote')
    if not (path / 'metadata.yaml').exists():
        raise BagError(f'{path} has no metadata.yaml: not a rosbag2 directory')
    return path


@dataclass
class BagFrame:
    """One message of a bag: its receive timestamp (ns), header stamp (ns) and message."""

    timestamp: int
    stamp: int
    msg: object


class BagReader:
    """Open a bag; list its topics; iterate one topic's messages, deserialised."""

    def __init__(self, path: str | Path):
        from rosbags.rosbag2 import Reader
        self.path = bag_path(path)
        self.store = typestore()
        self.error: str | None = None  # set when reading stopped early
        self.salvaged = False  # read record by record: the bag was cut short
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except Exception as exc:  # rosbags raises several types for broken bags
            why = f'{type(exc).__name__}: {exc}'
            try:
                self.reader = SalvageReader(self.path)
            except Exception:
                self.reader = None
            if self.reader is None or not self.reader.connections:
                raise BagError(f'cannot open bag {self.path}: {why}') from None
            self.salvaged = True

    def topics(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self.reader.connections}

    def describe_topics(self) -> str:
        return ', '.join(f'{t} ({m})' for t, m in sorted(self.topics().items())) or 'none'

    def image_topic(self, topic: str | None, exclude: tuple[str, ...] = ()) -> str:
        """The requested image topic, or the only one not in ``exclude``; else BagError
        listing the bag's topics."""
        topics = self.topics()
        if topic is not None:
            if topic not in topics:
                raise BagError(f'topic {topic} is not in {self.path}; its topics: '
                               f'{self.describe_topics()}')
            if topics[topic] not in IMAGE_TYPES:
                raise BagError(f'topic {topic} holds {topics[topic]}, not an image type '
                               f'({", ".join(IMAGE_TYPES)})')
            return topic
        # a recording of a running node holds its outputs too: those are not camera input
        images = [t for t, m in topics.items() if m in IMAGE_TYPES and t not in exclude
                  and '/segmentation/' not in f'{t}/']
        if len(images) != 1:
            raise BagError(f'{"no" if not images else "several"} image topics in {self.path}; '
                           f'pick one with --topic. Its topics: {self.describe_topics()}')
        return images[0]

    def count(self, topic: str) -> int | None:
        """Messages of ``topic`` the bag's index lists; None for a cut-short bag."""
        if self.salvaged:
            return None
        return sum(c.msgcount for c in self.reader.connections if c.topic == topic)

    def messages(self, topic: str):
        """Yield BagFrame for each message of ``topic``; on a read error, stop and set .error."""
        conns = [c for c in self.reader.connections if c.topic == topic]
        it = self.reader.messages(connections=conns)
        while True:
            try:
                conn, timestamp, raw = next(it)
                msg = self.store.deserialize_cdr(raw, conn.msgtype)
            except StopIteration:
                if self.salvaged:
                    where = self.reader.stopped or 'its index is missing'
                    self.error = (f'the recording was cut short ({where}); read everything '
                                  f'before that')
                return
            except Exception as exc:
                self.error = f'{type(exc).__name__}: {exc}'
                return
            yield BagFrame(timestamp, stamp_ns(msg.header), msg)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> 'BagReader':
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        except Exception:
            pass


class BagWriter:
    """Write sensor_msgs/Image messages (and friends) to a new bag, either storage."""

    def __init__(self, path: str | Path, storage: str = 'sqlite3'):
        from rosbags.rosbag2 import StoragePlugin, Writer
        plugins = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
        if storage not in plugins:
            raise BagError(f'unknown storage {storage!r}; expected sqlite3 or mcap')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path} exists; choose a new folder for the bag')
        self.store = typestore()
        self.writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self.writer.open()
        self.connections: dict[str, object] = {}

    def _header(self, stamp: int, frame_id: str):
        T = self.store.types
        return T['std_msgs/msg/Header'](
            stamp=T['builtin_interfaces/msg/Time'](sec=stamp // 1_000_000_000,
                                                   nanosec=stamp % 1_000_000_000),
            frame_id=frame_id)

    def image(self, array: np.ndarray, encoding: str, stamp: int, frame_id: str):
        """A sensor_msgs/Image of a contiguous (H, W[, C]) uint8 array."""
        return self.store.types['sensor_msgs/msg/Image'](
            header=self._header(stamp, frame_id), **array_to_fields(array, encoding, bag=True))

    def mask_png(self, ids: np.ndarray, stamp: int, frame_id: str):
        """A sensor_msgs/CompressedImage of an (H, W) uint8 mask, as the node publishes
        segmentation/mask/compressed."""
        return self.store.types['sensor_msgs/msg/CompressedImage'](
            header=self._header(stamp, frame_id), format=MASK_PNG_FORMAT,
            data=np.frombuffer(mask_to_png(ids), np.uint8))

    def write(self, topic: str, msg, timestamp: int) -> None:
        msgtype = msg.__msgtype__
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                                 typestore=self.store)
        self.writer.write(self.connections[topic], timestamp,
                          self.store.serialize_cdr(msg, msgtype))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
