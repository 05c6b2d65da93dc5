"""Where a decode puts each split's images: in RAM, or straight into a cache entry's .npy files.

A folder of 300,000 images at 64 px is 3.7 GB decoded. Holding it in one array and then copying each split
out of it took twice that; writing each decoded chunk at its place in the split's file (`FileRows`, through
os.pwrite into space reserved up front) holds only the chunks in flight, whatever the folder's size. Rows of
files that could not be decoded are squeezed out afterwards in place (`keep`), so the file ends up exactly what
`np.save` of the kept images would have written, byte for byte after the header.

Only the parent process writes: the decode workers return chunks as before (decode._decode_chunk).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_COMPACT_CHUNK = 4096  # rows moved at once when unreadable files' rows are squeezed out


def compact(array: np.ndarray, index: np.ndarray, chunk: int = _COMPACT_CHUNK) -> None:
    """Move rows `index` (ascending) to the front of `array`, in order, in place and chunk by chunk.
    Safe because index[k] >= k: a row is always read (copied by the fancy index) before its place is written."""
    done = 0
    for s in range(0, len(index), chunk):
        part = index[s : s + chunk]
        array[done : done + len(part)] = array[part]
        done += len(part)


class MemoryRows:
    """A split's images in an array in RAM (the decode of a data set that is not cached)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)
        self.array = np.empty(self.shape, dtype=np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def write(self, start: int, block: np.ndarray) -> None:
        self.array[start : start + len(block)] = block

    def keep(self, index: np.ndarray) -> None:
        if len(index) != len(self.array):
            compact(self.array, index)
            self.array = self.array[: len(index)]
            self.shape = self.array.shape

    def images(self) -> np.ndarray:
        return self.array


def npy_header(shape: tuple[int, ...], length: int | None = None) -> bytes:
    """A version 1.0 .npy header for C-ordered uint8 of `shape`, padded with spaces to `length` bytes (else to a
    multiple of 64, as np.save pads it)."""
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': %r, }" % (tuple(int(d) for d in shape),)
    if length is None:
        length = -(-(10 + len(text) + 1) // 64) * 64
    pad = length - 10 - len(text) - 1
    if pad < 0:
        raise ValueError("npy header does not fit")
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


class FileRows:
    """A split's images written straight into a .npy file: its whole size reserved at once (so a full disk
    fails here, before any decoding, and never as a fault on a write later), each chunk written at its offset."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path, self.shape = Path(path), tuple(int(d) for d in shape)
        self.row = int(np.prod(self.shape[1:], dtype=np.int64))
        header = npy_header(self.shape)
        self.offset = len(header)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        try:
            _write_all(self.fd, header, 0)
            size = self.offset + self.shape[0] * self.row
            if hasattr(os, "posix_fallocate") and size > self.offset:
                os.posix_fallocate(self.fd, 0, size)  # EFBIG/ENOSPC now, not SIGBUS or a short write later
            else:
                os.ftruncate(self.fd, size)
        except BaseException:
            os.close(self.fd)
            self.path.unlink(missing_ok=True)
            raise
        self.mapped = None

    def __len__(self) -> int:
        return self.shape[0]

    def write(self, start: int, block: np.ndarray) -> None:
        _write_all(self.fd, np.ascontiguousarray(block, dtype=np.uint8).data, self.offset + start * self.row)

    def keep(self, index: np.ndarray) -> None:
        if len(index) == self.shape[0]:
            return
        array = np.memmap(self.path, dtype=np.uint8, mode="r+", offset=self.offset, shape=self.shape)
        compact(array, index)
        array.flush()
        del array
        self.shape = (len(index),) + self.shape[1:]
        _write_all(self.fd, npy_header(self.shape, self.offset), 0)  # same length: the rows stay where they are
        os.ftruncate(self.fd, self.offset + len(index) * self.row)

    def images(self) -> np.ndarray:
        """The written images, memory-mapped copy-on-write (a change to the array never reaches the file)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.mapped = np.load(self.path, mmap_mode="c")
        return self.mapped

    def holds(self, array: np.ndarray) -> bool:
        """Whether `array` is this file's mapping, unchanged in shape (then the cache need not save it again)."""
        return self.mapped is not None and array.shape == self.mapped.shape and \
            array.__array_interface__["data"][0] == self.mapped.__array_interface__["data"][0]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _write_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, view, offset)
        else:  # Windows has no pwrite; only this process writes the file, so a seek then a write is the same
            os.lseek(fd, offset, os.SEEK_SET)
            n = os.write(fd, view)
        view, offset = view[n:], offset + n


class MemoryStore:
    """Rows in RAM for every split: what a decode without a cache entry uses."""

    failed: OSError | None = None

    def rows(self, split: str, shape: tuple[int, ...]):
        return MemoryRows(shape)


class FileStore:
    """Rows in `<folder>/<split>_images.npy` (a cache entry being built); when a file cannot be made (a full
    disk, a file-size limit) that split and every later one fall back to RAM and `failed` says why."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.files: dict[str, FileRows] = {}
        self.failed: OSError | None = None

    def rows(self, split: str, shape: tuple[int, ...]):
        if self.failed is None:
            try:
                self.files[split] = FileRows(self.folder / f"{split}_images.npy", shape)
                return self.files[split]
            except OSError as e:
                self.failed = e
        return MemoryRows(shape)

    def holds(self, split: str, array: np.ndarray) -> bool:
        return split in self.files and self.files[split].holds(array)

    def close(self) -> None:
        for rows in self.files.values():
            rows.close()
