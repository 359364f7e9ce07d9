"""Read what a cut-short rosbag2 recording still holds, in recording order.

A recording that dies (power cut, full disk, a killed recorder) leaves an MCAP file with no
summary or footer, or an sqlite3 file whose last pages are missing; ``rosbags`` refuses to
open either. These readers walk the file from its start and yield every complete message
up to where the data ends, so the tools can evaluate or replay the readable part and say
where it stopped. Only uncompressed MCAP chunks are read (what ``rosbags`` and
``make_bag`` write; ``ros2 bag record`` compresses only on request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import sqlite3
import struct
import tempfile

MCAP_MAGIC = b'\x89MCAP0\r\n'
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x03, 0x04, 0x05, 0x06


@dataclass(frozen=True)
class Connection:
    id: int
    topic: str
    msgtype: str


class SalvageReader:
    """``connections`` and ``messages(connections)`` like rosbags' Reader, read in order;
    ``stopped`` says where and why the readable data ended (None when it did not)."""

    def __init__(self, path: Path):
        files = sorted(p for p in path.iterdir() if p.suffix in ('.mcap', '.db3'))
        if not files:
            raise ValueError(f'no .mcap or .db3 file in {path}')
        self.file = files[0]
        self.stopped: str | None = None
        self.connections: list[Connection] = []
        for item in self._records():  # connections come before their messages
            if not isinstance(item, Connection):
                break
            self.connections.append(item)

    def _records(self):
        """A fresh pass over the file: Connection items and (id, timestamp, raw) tuples."""
        self.stopped = None
        return (self._mcap if self.file.suffix == '.mcap' else self._sqlite)()

    def messages(self, connections):
        wanted = {c.id: c for c in connections}
        for item in self._records():
            if not isinstance(item, Connection) and item[0] in wanted:
                yield wanted[item[0]], item[1], item[2]

    def close(self) -> None:
        pass

    # -- formats -------------------------------------------------------------------

    def _mcap(self):
        data = self.file.read_bytes()
        if not data.startswith(MCAP_MAGIC):
            raise ValueError(f'{self.file.name} does not start with the MCAP magic')
        schemas: dict[int, str] = {}
        yield from self._mcap_records(data, len(MCAP_MAGIC), schemas, top=True)

    def _mcap_records(self, data: bytes, i: int, schemas: dict, top: bool):
        def string(buf, k):
            n = struct.unpack_from('<I', buf, k)[0]
            return buf[k + 4:k + 4 + n].decode(), k + 4 + n

        while True:
            if i + 9 > len(data):
                if top:
                    self.stopped = f'file ends at byte {len(data)} inside a record header'
                return
            op, n = data[i], struct.unpack_from('<Q', data, i + 1)[0]
            body = data[i + 9:i + 9 + n]
            if op == OP_CHUNK:
                # start, end, uncompressed size, crc, compression, records (u64 length)
                compression, k = string(body, 28)
                if compression:
                    self.stopped = f'compressed chunk ({compression}) at byte {i}: not read'
                    return
                yield from self._mcap_records(body[k + 8:], 0, schemas, top=False)
                if len(body) < n:
                    self.stopped = f'file ends at byte {len(data)} inside a chunk'
                    return
            elif len(body) < n:
                self.stopped = f'file ends at byte {len(data)} inside a record'
                return
            elif op == OP_SCHEMA:
                sid = struct.unpack_from('<H', body, 0)[0]
                schemas[sid], _ = string(body, 2)
            elif op == OP_CHANNEL:
                cid, sid = struct.unpack_from('<HH', body, 0)
                topic, _ = string(body, 4)
                yield Connection(cid, topic, schemas.get(sid, ''))
            elif op == OP_MESSAGE:
                cid, _, log_time = struct.unpack_from('<HIQ', body, 0)
                yield cid, log_time, body[22:]
            i += 9 + n

    def _sqlite(self):
        # sqlite refuses a file shorter than its header's page count: read a copy cut to
        # whole pages with the count corrected (the user's file is never written)
        raw = bytearray(self.file.read_bytes())
        page = struct.unpack('>H', raw[16:18])[0] if len(raw) >= 100 else 0
        page = 65536 if page == 1 else page
        if not page:
            raise ValueError(f'{self.file.name} has no sqlite header')
        pages = len(raw) // page
        del raw[pages * page:]
        raw[28:32] = struct.pack('>I', pages)
        tmp = tempfile.NamedTemporaryFile(suffix='.db3')
        tmp.write(raw)
        tmp.flush()
        db = sqlite3.connect(f'file:{tmp.name}?mode=ro&immutable=1', uri=True)
        try:
            for tid, name, msgtype in db.execute('SELECT id, name, type FROM topics'):
                yield Connection(tid, name, msgtype)
            rows = db.execute('SELECT topic_id, timestamp, data FROM messages ORDER BY id')
            while True:
                try:
                    row = rows.fetchone()
                except sqlite3.DatabaseError as exc:
                    self.stopped = f'database unreadable past this point ({exc})'
                    return
                if row is None:
                    return
                yield row[0], row[1], bytes(row[2])
        except sqlite3.DatabaseError as exc:
            self.stopped = f'database unreadable ({exc})'
        finally:
            db.close()
            tmp.close()
