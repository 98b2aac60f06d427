"""A minimal reader of tiled GeoTIFFs and Cloud-Optimised GeoTIFFs (no GDAL): headers, block index, block decoding.

The header (classic TIFF or BigTIFF, either byte order) is parsed from ranged reads through a
``read_range(offset, length) -> bytes`` callable: the first 64 KiB, then more only where an IFD or a tag array
lies beyond what was read. Every image IFD becomes a :class:`CogLevel` (full resolution first, then the
overviews, largest first; transparency masks are skipped); :class:`CogInfo` adds the geotransform and the EPSG
code from the GeoTIFF tags. Blocks are decoded by :func:`decode_block` (no compression, deflate with or without
horizontal differencing, JPEG with shared JPEGTables; other codecs through ``imagecodecs`` when installed) and
stitched into any pixel window by :func:`read_window`. Errors are :class:`CogError` and name the file and the tag.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...io.files import atomic_path

log = logging.getLogger(__name__)

ReadRange = Callable[[int, int], bytes]
#: ``get_block(block_row, block_col) -> decoded block`` (None: a sparse block, left as fill)
GetBlock = Callable[[int, int], "np.ndarray | None"]

HEADER_BYTES = 64 * 1024

TAG_NAMES = {
    254: "NewSubfileType", 256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 259: "Compression",
    262: "PhotometricInterpretation", 273: "StripOffsets", 277: "SamplesPerPixel", 284: "PlanarConfiguration",
    317: "Predictor", 322: "TileWidth", 323: "TileLength", 324: "TileOffsets", 325: "TileByteCounts",
    338: "ExtraSamples", 339: "SampleFormat", 347: "JPEGTables", 33550: "ModelPixelScale",
    33922: "ModelTiepoint", 34264: "ModelTransformation", 34735: "GeoKeyDirectory", 42113: "GDAL_NODATA",
}
COMPRESSION_NAMES = {1: "none", 5: "LZW", 7: "JPEG", 8: "deflate", 32773: "PackBits", 32946: "deflate (old code)",
                     34887: "LERC", 34925: "LZMA", 50000: "ZSTD", 50001: "WebP", 50002: "JPEG XL"}
_IMAGECODECS = {5: "lzw_decode", 32773: "packbits_decode", 34925: "lzma_decode", 50000: "zstd_decode"}
# TIFF field type -> (numpy dtype code, values per element)
_TYPES = {1: ("u1", 1), 2: ("u1", 1), 3: ("u2", 1), 4: ("u4", 1), 5: ("u4", 2), 6: ("i1", 1), 7: ("u1", 1),
          8: ("i2", 1), 9: ("i4", 1), 10: ("i4", 2), 11: ("f4", 1), 12: ("f8", 1), 13: ("u4", 1), 16: ("u8", 1),
          17: ("i8", 1), 18: ("u8", 1)}
_MAX_IFDS = 64


class CogError(ValueError):
    """A GeoTIFF that cannot be read: the message names the file/URL and the tag."""


def _tag(code: int) -> str:
    return f"{TAG_NAMES.get(code, 'tag')} ({code})"


@dataclass(frozen=True, eq=False)
class CogLevel:
    """One image IFD: the full resolution or an overview."""

    source: str
    ifd: int  # position in the IFD chain
    width: int
    height: int
    tile_width: int
    tile_length: int
    samples: int
    bits_per_sample: tuple[int, ...]
    sample_format: int
    planar: int
    compression: int
    predictor: int
    photometric: int
    jpeg_tables: bytes | None
    offsets: np.ndarray = field(repr=False)  # uint64, one per block, row-major
    byte_counts: np.ndarray = field(repr=False)
    subfile_type: int = 0

    @property
    def blocks_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def blocks_down(self) -> int:
        return -(-self.height // self.tile_length)

    def block_range(self, block_row: int, block_col: int) -> tuple[int, int]:
        """``(offset, length)`` of one block's bytes in the file (length 0: a sparse block)."""
        if not (0 <= block_row < self.blocks_down and 0 <= block_col < self.blocks_across):
            raise CogError(f"{self.source}: block ({block_row}, {block_col}) outside the {self.blocks_down} x "
                           f"{self.blocks_across} blocks of IFD {self.ifd}")
        index = block_row * self.blocks_across + block_col
        return int(self.offsets[index]), int(self.byte_counts[index])


@dataclass(frozen=True, eq=False)
class CogInfo:
    """A parsed (Geo)TIFF header."""

    source: str
    bigtiff: bool
    byte_order: str  # "<" little endian (II), ">" big endian (MM)
    levels: tuple[CogLevel, ...]  # full resolution first, then overviews by decreasing width
    transform: tuple[float, float, float, float, float, float] | None  # x = a*col + b*row + c, y = d*col + e*row + f
    epsg: int | None
    nodata: float | None = None

    @property
    def full(self) -> CogLevel:
        return self.levels[0]

    def level_transform(self, index: int) -> tuple[float, ...] | None:
        """The geotransform of level ``index`` (an overview covers the same extent with fewer pixels)."""
        if self.transform is None:
            return None
        a, b, c, d, e, f = self.transform
        sx = self.full.width / self.levels[index].width
        sy = self.full.height / self.levels[index].height
        return (a * sx, b * sy, c, d * sx, e * sy, f)


class _Ranges:
    """Bytes of the file read so far, extended on demand through ``read_range``."""

    def __init__(self, read_range: ReadRange, source: str, first: int) -> None:
        self._read = read_range
        self.source = source
        self._chunk = max(first, 4096)
        self._segments: list[tuple[int, bytes]] = [(0, bytes(read_range(0, first)))]

    def get(self, offset: int, length: int, what: str) -> bytes:
        for start, data in self._segments:
            if start <= offset and offset + length <= start + len(data):
                return data[offset - start: offset - start + length]
        data = bytes(self._read(offset, max(length, self._chunk)))
        if len(data) < length:
            raise CogError(f"{self.source}: {what} at byte {offset} (+{length} bytes) lies beyond the end of the file")
        log.debug("%s: read %d more header bytes at %d for %s", self.source, len(data), offset, what)
        self._segments.append((offset, data))
        return data[:length]


def _values(ranges: _Ranges, order: str, entry: tuple[int, int, bytes | int], tag: int) -> np.ndarray | bytes:
    typ, count, where = entry
    code, per = _TYPES[typ]
    dtype = np.dtype(code).newbyteorder(order)
    size = count * per * dtype.itemsize
    raw = where if isinstance(where, bytes) else ranges.get(where, size, _tag(tag))
    raw = raw[:size]
    if typ in (2, 7):  # ASCII, UNDEFINED: bytes
        return raw
    values = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if per == 2:
        pairs = values.reshape(-1, 2).astype(np.float64)
        return pairs[:, 0] / np.where(pairs[:, 1] == 0, 1, pairs[:, 1])
    return values


def _read_ifd(ranges: _Ranges, order: str, big: bool, offset: int) -> tuple[dict[int, Any], int]:
    """The raw entries of the IFD at ``offset`` ({tag: (type, count, inline bytes | offset)}) and the next offset."""
    count_fmt, count_size, entry_size, inline = ("Q", 8, 20, 8) if big else ("H", 2, 12, 4)
    (n,) = struct.unpack(order + count_fmt, ranges.get(offset, count_size, f"IFD at byte {offset}"))
    if n == 0 or n > 4096:
        raise CogError(f"{ranges.source}: IFD at byte {offset} claims {n} entries (not a TIFF, or corrupt)")
    body = ranges.get(offset + count_size, n * entry_size + inline, f"IFD at byte {offset}")
    entries: dict[int, Any] = {}
    for i in range(n):
        chunk = body[i * entry_size:(i + 1) * entry_size]
        if big:
            tag, typ, cnt = struct.unpack(order + "HHQ", chunk[:12])
        else:
            tag, typ, cnt = struct.unpack(order + "HHI", chunk[:8])
        value = chunk[entry_size - inline:]
        if typ not in _TYPES:
            log.debug("%s: skipping tag %d of unknown type %d", ranges.source, tag, typ)
            continue
        code, per = _TYPES[typ]
        size = cnt * per * np.dtype(code).itemsize
        entries[tag] = (typ, cnt, value if size <= inline else struct.unpack(order + ("Q" if big else "I"), value)[0])
    (next_offset,) = struct.unpack(order + ("Q" if big else "I"), body[n * entry_size:])
    return entries, next_offset


def _scalar(tags: dict, ranges: _Ranges, order: str, tag: int, ifd: int, default: int | None = None) -> int:
    if tag not in tags:
        if default is None:
            raise CogError(f"{ranges.source}: IFD {ifd} lacks the required tag {_tag(tag)}")
        return default
    return int(np.asarray(_values(ranges, order, tags[tag], tag)).ravel()[0])


def _level(tags: dict, ranges: _Ranges, order: str, ifd: int) -> CogLevel:
    src = ranges.source
    if 322 not in tags:
        what = "stripped (StripOffsets (273))" if 273 in tags else "not tiled"
        raise CogError(f"{src}: IFD {ifd} is {what}; only tiled GeoTIFFs are supported (TileWidth (322) missing)")
    width, height = _scalar(tags, ranges, order, 256, ifd), _scalar(tags, ranges, order, 257, ifd)
    tile_w, tile_l = _scalar(tags, ranges, order, 322, ifd), _scalar(tags, ranges, order, 323, ifd)
    samples = _scalar(tags, ranges, order, 277, ifd, 1)
    planar = _scalar(tags, ranges, order, 284, ifd, 1)
    if planar != 1:
        raise CogError(f"{src}: IFD {ifd} has {_tag(284)} = {planar}; only chunky (1, pixel-interleaved) is supported")
    bits = tuple(int(v) for v in np.asarray(_values(ranges, order, tags[258], 258)).ravel()) if 258 in tags else (1,)
    for tag in (324, 325):
        if tag not in tags:
            raise CogError(f"{src}: IFD {ifd} lacks the required tag {_tag(tag)}")
    offsets = np.asarray(_values(ranges, order, tags[324], 324), dtype=np.uint64)
    counts = np.asarray(_values(ranges, order, tags[325], 325), dtype=np.uint64)
    blocks = -(-width // tile_w) * -(-height // tile_l)
    if len(offsets) != blocks or len(counts) != blocks:
        raise CogError(f"{src}: IFD {ifd} has {len(offsets)} {_tag(324)} and {len(counts)} {_tag(325)} entries "
                       f"for {blocks} blocks of {tile_w} x {tile_l}")
    tables = bytes(_values(ranges, order, tags[347], 347)) if 347 in tags else None
    return CogLevel(
        source=src, ifd=ifd, width=width, height=height, tile_width=tile_w, tile_length=tile_l, samples=samples,
        bits_per_sample=bits, sample_format=_scalar(tags, ranges, order, 339, ifd, 1), planar=planar,
        compression=_scalar(tags, ranges, order, 259, ifd, 1), predictor=_scalar(tags, ranges, order, 317, ifd, 1),
        photometric=_scalar(tags, ranges, order, 262, ifd, 2), jpeg_tables=tables, offsets=offsets,
        byte_counts=counts, subfile_type=_scalar(tags, ranges, order, 254, ifd, 0))


def _georeference(tags: dict, ranges: _Ranges, order: str) -> tuple[tuple[float, ...] | None, int | None]:
    """The affine geotransform (corner of pixel (0, 0)) and the EPSG code of the first IFD."""
    keys: dict[int, int] = {}
    if 34735 in tags:
        directory = np.asarray(_values(ranges, order, tags[34735], 34735), dtype=np.int64)
        if len(directory) < 4 or len(directory) < 4 + 4 * int(directory[3]):
            raise CogError(f"{ranges.source}: {_tag(34735)} is too short ({len(directory)} values)")
        for i in range(int(directory[3])):
            key, location, _count, value = (int(v) for v in directory[4 + 4 * i: 8 + 4 * i])
            if location == 0:  # the value sits in the directory itself (all the keys read here do)
                keys[key] = value
    transform: tuple[float, ...] | None = None
    if 34264 in tags:
        m = np.asarray(_values(ranges, order, tags[34264], 34264), dtype=np.float64)
        if len(m) < 16:
            raise CogError(f"{ranges.source}: {_tag(34264)} has {len(m)} values, expected 16")
        transform = (m[0], m[1], m[3], m[4], m[5], m[7])
    elif 33550 in tags and 33922 in tags:
        scale = np.asarray(_values(ranges, order, tags[33550], 33550), dtype=np.float64)
        tie = np.asarray(_values(ranges, order, tags[33922], 33922), dtype=np.float64)
        if len(scale) < 2 or len(tie) < 6:
            raise CogError(f"{ranges.source}: {_tag(33550)} / {_tag(33922)} too short ({len(scale)}, {len(tie)})")
        i, j, x, y = tie[0], tie[1], tie[3], tie[4]
        transform = (scale[0], 0.0, x - i * scale[0], 0.0, -scale[1], y + j * scale[1])
    if transform is not None and keys.get(1025) == 2:  # GTRasterTypeGeoKey PixelIsPoint: the tie is a pixel centre
        a, b, c, d, e, f = transform
        transform = (a, b, c - 0.5 * (a + b), d, e, f - 0.5 * (d + e))
    epsg = keys.get(3072) or keys.get(2048)
    if epsg == 32767:  # user-defined
        epsg = None
    return (tuple(float(v) for v in transform) if transform is not None else None), epsg


def parse_cog(read_range: ReadRange, *, source: str = "<tiff>", first_bytes: int = HEADER_BYTES) -> CogInfo:
    """Parse a tiled (Geo)TIFF header from ranged reads; ``source`` (file or URL) names it in errors."""
    ranges = _Ranges(read_range, source, first_bytes)
    head = ranges.get(0, 8, "TIFF header")
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        raise CogError(f"{source}: not a TIFF file (byte-order mark {head[:2]!r})")
    (version,) = struct.unpack(order + "H", head[2:4])
    if version == 42:
        big, (offset,) = False, struct.unpack(order + "I", head[4:8])
    elif version == 43:
        big = True
        size, _zero, offset = struct.unpack(order + "HHQ", ranges.get(4, 12, "BigTIFF header"))
        if size != 8:
            raise CogError(f"{source}: BigTIFF offset size {size}, expected 8")
    else:
        raise CogError(f"{source}: not a TIFF file (version {version}, expected 42 or 43)")
    full: CogLevel | None = None
    overviews: list[CogLevel] = []
    transform, epsg, nodata = None, None, None
    seen: set[int] = set()
    ifd = 0
    while offset:
        if offset in seen or ifd >= _MAX_IFDS:
            raise CogError(f"{source}: the IFD chain loops or is longer than {_MAX_IFDS} (at byte {offset})")
        seen.add(offset)
        tags, offset_next = _read_ifd(ranges, order, big, offset)
        if ifd == 0:
            transform, epsg = _georeference(tags, ranges, order)
            if 42113 in tags:
                text = bytes(_values(ranges, order, tags[42113], 42113)).rstrip(b"\x00").decode("ascii", "replace")
                try:
                    nodata = float(text)
                except ValueError:
                    log.debug("%s: unreadable GDAL_NODATA %r", source, text)
        subfile = _scalar(tags, ranges, order, 254, ifd, 0)
        if not subfile & 4:  # skip transparency masks
            level = _level(tags, ranges, order, ifd)
            if subfile & 1 and full is not None:
                overviews.append(level)
            elif full is None:
                full = level
        offset, ifd = offset_next, ifd + 1
    if full is None:
        raise CogError(f"{source}: no full-resolution image IFD")
    overviews.sort(key=lambda level: -level.width)
    return CogInfo(source=source, bigtiff=big, byte_order=order, levels=(full, *overviews), transform=transform,
                   epsg=epsg, nodata=nodata)


def parse_cog_bytes(data: bytes, *, source: str = "<tiff>", first_bytes: int = HEADER_BYTES) -> CogInfo:
    """:func:`parse_cog` over bytes in memory."""
    return parse_cog(lambda offset, length: data[offset:offset + length], source=source, first_bytes=first_bytes)


# --------------------------------------------------------------------------- decoding


def jpeg_segments(stream: bytes) -> list[tuple[int, int, int]]:
    """``(marker, start, end)`` of each marker segment after SOI, up to and including SOS."""
    if stream[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream (no SOI marker)")
    segments, pos = [], 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            segments.append((marker, pos, pos + 2))
            break
        (length,) = struct.unpack(">H", stream[pos + 2:pos + 4])
        segments.append((marker, pos, pos + 2 + length))
        pos += 2 + length
        if marker == 0xDA:
            break
    return segments


_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"  # APP14, transform 0: no colour transform


def _decode_jpeg(level: CogLevel, raw: bytes, where: str) -> np.ndarray:
    from PIL import Image

    stream = raw
    if level.jpeg_tables:
        tables = level.jpeg_tables
        if tables[:2] != b"\xff\xd8" or tables[-2:] != b"\xff\xd9" or raw[:2] != b"\xff\xd8":
            raise CogError(f"{where}: {_tag(347)} or the block is not a JPEG stream (SOI/EOI markers missing)")
        stream = tables[:-2] + raw[2:]  # tables without EOI + block without SOI
    try:
        markers = {marker for marker, _, _ in jpeg_segments(stream)}
    except ValueError as exc:
        raise CogError(f"{where}: Compression (259) = 7 (JPEG) block is not a JPEG stream: {exc}") from exc
    if level.samples == 3 and level.photometric != 6 and not markers & {0xE0, 0xEE}:
        # an RGB (not YCbCr) JPEG as libtiff writes it: without an Adobe marker libjpeg would assume YCbCr
        stream = stream[:2] + _ADOBE_RGB + stream[2:]
    try:
        with Image.open(io.BytesIO(stream)) as image:
            image.load()
            array = np.asarray(image)
    except Exception as exc:  # Pillow raises OSError/SyntaxError/ValueError on bad streams
        raise CogError(f"{where}: Compression (259) = 7 (JPEG) block does not decode: {exc}") from exc
    return array[..., None] if array.ndim == 2 else array


def _imagecodecs(level: CogLevel, raw: bytes, where: str) -> bytes | np.ndarray:
    name = COMPRESSION_NAMES.get(level.compression, "unknown")
    try:
        import imagecodecs
    except ImportError:
        imagecodecs = None
    function = _IMAGECODECS.get(level.compression, "webp_decode" if level.compression == 50001 else None)
    if imagecodecs is None or function is None or not hasattr(imagecodecs, function):
        hint = "pip install imagecodecs" if function else "no decoder known to gnnbench"
        raise CogError(f"{where}: Compression (259) = {level.compression} ({name}) is not supported; {hint}")
    return getattr(imagecodecs, function)(raw)


def decode_block(level: CogLevel, raw: bytes, *, where: str | None = None) -> np.ndarray:
    """A block's pixels, ``(tile_length, tile_width, samples)`` uint8; ``where`` names it in errors."""
    where = where or f"{level.source} (IFD {level.ifd})"
    if any(bits != 8 for bits in level.bits_per_sample):
        raise CogError(f"{where}: {_tag(258)} = {level.bits_per_sample}; only 8-bit samples are supported")
    if level.sample_format != 1:
        raise CogError(f"{where}: {_tag(339)} = {level.sample_format}; only unsigned integers (1) are supported")
    shape = (level.tile_length, level.tile_width, level.samples)
    compression = level.compression
    if compression == 7:
        array = _decode_jpeg(level, raw, where)
    else:
        if compression == 1:
            data: bytes | np.ndarray = raw
        elif compression in (8, 32946):
            try:
                data = zlib.decompress(raw)
            except zlib.error as exc:
                raise CogError(f"{where}: Compression (259) = {compression} (deflate) block does not inflate: "
                               f"{exc}") from exc
        else:
            data = _imagecodecs(level, raw, where)
        if isinstance(data, np.ndarray) and data.ndim >= 2:
            array = data.reshape(data.shape[0], data.shape[1], -1).astype(np.uint8, copy=False)
        else:
            flat = np.frombuffer(data, dtype=np.uint8)
            need = shape[0] * shape[1] * shape[2]
            if flat.size < need:
                raise CogError(f"{where}: block has {flat.size} bytes after decompression, expected {need}")
            array = flat[:need].reshape(shape)
        if level.predictor == 2:
            array = np.cumsum(array, axis=1, dtype=np.uint8)  # undo horizontal differencing, per sample, mod 256
        elif level.predictor != 1:
            raise CogError(f"{where}: {_tag(317)} = {level.predictor}; only 1 (none) and 2 (horizontal) are "
                           "supported")
    if array.shape != shape:
        raise CogError(f"{where}: block decodes to {array.shape}, expected {shape} (TileLength x TileWidth x "
                       "SamplesPerPixel)")
    return array


# --------------------------------------------------------------------------- windows


def blocks_for_window(level: CogLevel, col0: int, row0: int, col1: int, row1: int) -> list[tuple[int, int]]:
    """The ``(block_row, block_col)`` of the blocks overlapping columns [col0, col1) and rows [row0, row1)
    (clipped to the raster), row-major."""
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, level.width), min(row1, level.height)
    if col0 >= col1 or row0 >= row1:
        return []
    tw, tl = level.tile_width, level.tile_length
    return [(br, bc) for br in range(row0 // tl, (row1 - 1) // tl + 1)
            for bc in range(col0 // tw, (col1 - 1) // tw + 1)]


def read_window(level: CogLevel, get_block: GetBlock, col0: int, row0: int, width: int, height: int,
                fill: int = 0) -> np.ndarray:
    """Pixels of columns [col0, col0+width) and rows [row0, row0+height), ``(height, width, samples)`` uint8,
    stitched from the blocks ``get_block`` returns; pixels outside the raster (or in sparse blocks) are ``fill``."""
    out = np.full((height, width, level.samples), fill, dtype=np.uint8)
    tw, tl = level.tile_width, level.tile_length
    for br, bc in blocks_for_window(level, col0, row0, col0 + width, row0 + height):
        block = get_block(br, bc)
        if block is None:
            continue
        if block.shape[:2] != (tl, tw) or block.shape[2] < level.samples:
            raise CogError(f"{level.source}: block ({br}, {bc}) of IFD {level.ifd} has shape {block.shape}, "
                           f"expected {(tl, tw, level.samples)}")
        x0, y0 = bc * tw, br * tl
        x1, y1 = min(x0 + tw, level.width), min(y0 + tl, level.height)
        ix0, ix1 = max(x0, col0), min(x1, col0 + width)
        iy0, iy1 = max(y0, row0), min(y1, row0 + height)
        out[iy0 - row0:iy1 - row0, ix0 - col0:ix1 - col0] = block[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, :level.samples]
    return out


# --------------------------------------------------------------------------- header cache


_SCALARS = ("ifd", "width", "height", "tile_width", "tile_length", "samples", "sample_format", "planar",
            "compression", "predictor", "photometric", "subfile_type")


def save_info(info: CogInfo, path: str | os.PathLike) -> None:
    """Write a parsed header to ``path`` (``.npz``, atomically), so a file's header is fetched once."""
    meta: dict[str, Any] = {"source": info.source, "bigtiff": info.bigtiff, "byte_order": info.byte_order,
                            "transform": info.transform, "epsg": info.epsg, "nodata": info.nodata, "levels": []}
    arrays: dict[str, np.ndarray] = {}
    for i, level in enumerate(info.levels):
        meta["levels"].append({**{name: getattr(level, name) for name in _SCALARS},
                               "bits_per_sample": list(level.bits_per_sample)})
        arrays[f"offsets_{i}"] = level.offsets
        arrays[f"byte_counts_{i}"] = level.byte_counts
        arrays[f"jpeg_tables_{i}"] = np.frombuffer(level.jpeg_tables or b"", dtype=np.uint8)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)


def load_info(path: str | os.PathLike) -> CogInfo:
    """Read a header written by :func:`save_info`."""
    with np.load(path) as data:
        meta = json.loads(data["meta"].tobytes())
        levels = tuple(
            CogLevel(source=meta["source"], bits_per_sample=tuple(spec.pop("bits_per_sample")),
                     jpeg_tables=data[f"jpeg_tables_{i}"].tobytes() or None, offsets=data[f"offsets_{i}"],
                     byte_counts=data[f"byte_counts_{i}"], **spec)
            for i, spec in enumerate(meta["levels"]))
    transform = tuple(meta["transform"]) if meta["transform"] is not None else None
    return CogInfo(source=meta["source"], bigtiff=meta["bigtiff"], byte_order=meta["byte_order"], levels=levels,
                   transform=transform, epsg=meta["epsg"], nodata=meta["nodata"])
