"""Read TensorFlow 1/2 checkpoints without TensorFlow.

A checkpoint ``PREFIX`` is a TensorBundle: ``PREFIX.index``, a LevelDB-format sorted table
mapping each variable name to a ``BundleEntryProto`` (dtype, shape, shard, offset, size,
CRC-32C), and ``PREFIX.data-SSSSS-of-NNNNN`` shards holding the raw little-endian tensor bytes.
Every block of the table and every tensor carries a masked CRC-32C; all are verified, so a
corrupted file is refused rather than silently converted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.errors import ModelFileError
from tagger.model.convert.crc32c import crc32c, masked

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two padded block handles (40 bytes) + 8-byte magic
_BLOCK_TRAILER = 5  # compression type byte + masked crc32c

# tensorflow/core/framework/types.proto
_DTYPES = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes):
    """Yield (field number, wire type, value) of a protobuf message; LEN values are bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value = buf[pos:pos + n]
            if len(value) != n:
                raise ValueError("truncated field")
            pos += n
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, _, value in _proto_fields(buf):
        if field == 2:  # repeated Dim { int64 size = 1; string name = 2; }
            size = 0
            for f, _, v in _proto_fields(value):
                if f == 1:
                    size = v
            dims.append(size)
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    fields = {"dtype": 0, "shape": (), "shard": 0, "offset": 0, "size": 0, "crc": 0}
    for field, _, value in _proto_fields(buf):
        if field == 1:
            fields["dtype"] = value
        elif field == 2:
            fields["shape"] = _parse_shape(value)
        elif field == 3:
            fields["shard"] = value
        elif field == 4:
            fields["offset"] = value
        elif field == 5:
            fields["size"] = value
        elif field == 6:
            fields["crc"] = value
        elif field == 7:
            raise ValueError(f"{name} is a partitioned variable; not supported")
    return TensorEntry(name, fields["dtype"], fields["shape"], fields["shard"],
                       fields["offset"], fields["size"], fields["crc"])


class _Table:
    """A LevelDB sorted table held in memory (TensorFlow writes them uncompressed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        if len(data) < _FOOTER_SIZE:
            raise ValueError("index file too short")
        footer = data[-_FOOTER_SIZE:]
        if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
            raise ValueError("not a TensorFlow checkpoint index (bad magic)")
        _, pos = _varint(footer, 0)  # metaindex handle: unused
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        self.index_block = self._block(index_offset, index_size)

    def _block(self, offset: int, size: int) -> bytes:
        end = offset + size
        if end + _BLOCK_TRAILER > len(self.data):
            raise ValueError("block extends past the end of the file")
        contents = self.data[offset:end]
        kind, stored = struct.unpack_from("<BI", self.data, end)
        if masked(crc32c(self.data[offset:end + 1])) != stored:
            raise ValueError(f"checksum mismatch in table block at byte {offset}")
        if kind != 0:
            raise ValueError(f"compressed table blocks (type {kind}) are not supported")
        return contents

    @staticmethod
    def _entries(block: bytes):
        num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
        limit = len(block) - 4 - 4 * num_restarts
        pos, key = 0, b""
        while pos < limit:
            shared, pos = _varint(block, pos)
            unshared, pos = _varint(block, pos)
            value_len, pos = _varint(block, pos)
            key = key[:shared] + block[pos:pos + unshared]
            pos += unshared
            yield key, block[pos:pos + value_len]
            pos += value_len

    def items(self):
        for _, handle in self._entries(self.index_block):
            offset, pos = _varint(handle, 0)
            size, _ = _varint(handle, pos)
            yield from self._entries(self._block(offset, size))


class Checkpoint:
    """A TensorFlow checkpoint, e.g. ``Checkpoint("musicnn/MTT_vgg/")`` for files
    ``musicnn/MTT_vgg/.index`` and ``musicnn/MTT_vgg/.data-00000-of-00001``."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        index_path = Path(self.prefix + ".index")
        try:
            table = _Table(index_path.read_bytes())
            self.num_shards = 1
            self.entries: dict[str, TensorEntry] = {}
            for key, value in table.items():
                if key == b"":  # BundleHeaderProto { int32 num_shards = 1; ... }
                    for field, _, v in _proto_fields(value):
                        if field == 1:
                            self.num_shards = v
                    continue
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value)
        except OSError as e:
            raise ModelFileError(index_path, f"cannot read checkpoint index: {e.strerror}") from None
        except (ValueError, struct.error, UnicodeDecodeError) as e:
            raise ModelFileError(index_path, f"corrupt checkpoint index: {e}") from None
        self._shards: dict[int, bytes] = {}

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard: int) -> bytes:
        if shard not in self._shards:
            path = self.shard_path(shard)
            try:
                self._shards[shard] = path.read_bytes()
            except OSError as e:
                raise ModelFileError(path, f"cannot read checkpoint data: {e.strerror}") from None
        return self._shards[shard]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a numpy array, after checking its CRC-32C."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelFileError(Path(self.prefix + ".index"), f"no variable named {name!r}")
        dtype = _DTYPES.get(entry.dtype_code)
        if dtype is None:
            raise ModelFileError(Path(self.prefix + ".index"),
                                 f"variable {name!r} has unsupported dtype code {entry.dtype_code}")
        data = self._shard(entry.shard)[entry.offset:entry.offset + entry.size]
        path = self.shard_path(entry.shard)
        if len(data) != entry.size:
            raise ModelFileError(path, f"truncated: variable {name!r} runs past the end")
        if masked(crc32c(data)) != entry.crc32c:
            raise ModelFileError(path, f"checksum mismatch for variable {name!r}; the file is corrupt")
        count = int(np.prod(entry.shape)) if entry.shape else 1
        if count * dtype.itemsize != entry.size:
            raise ModelFileError(path, f"variable {name!r}: size does not match its shape")
        return np.frombuffer(data, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))
