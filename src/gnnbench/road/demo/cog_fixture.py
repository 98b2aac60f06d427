"""Small tiled GeoTIFFs written by our own writer (struct + zlib + Pillow), for the COG reader's tests and the
loopback NAIP server.

:func:`cog_bytes` lays a file out as a Cloud-Optimised GeoTIFF does: header, every IFD with its tag arrays, then
the blocks. Classic TIFF or BigTIFF, either byte order, 256- or 512-pixel tiles, no compression, deflate (with
horizontal differencing) or JPEG (tables shared through JPEGTables, as libtiff writes them), one overview IFD,
and GeoTIFF keys for an EPSG code and a pixel size. The pixels come from a callable of raster columns and rows;
the default, :func:`coordinate_pixels`, encodes them (R = col & 255, G = row & 255, B = the high nibbles,
NIR = year - 2000), so :func:`decode_coordinates` recovers (col mod 4096, row mod 4096) from any crop.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..tiles.cog import jpeg_segments

#: ``pixels(cols, rows) -> (h, w, bands) uint8`` for integer arrays of full-resolution raster columns and rows
PixelFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]

COMPRESSION_CODES = {"none": 1, "deflate": 8, "jpeg": 7}


def coordinate_pixels(year: int = 2020, bands: int = 4) -> PixelFunction:
    """The coordinate encoding: R = col & 255, G = row & 255, B = (col >> 8 & 15) << 4 | (row >> 8 & 15),
    NIR = year - 2000 (the first ``bands`` of these)."""

    def pixels(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        cols, rows = np.asarray(cols, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        out = np.empty((*cols.shape, 4), dtype=np.uint8)
        out[..., 0] = cols & 255
        out[..., 1] = rows & 255
        out[..., 2] = ((cols >> 8) & 15) << 4 | ((rows >> 8) & 15)
        out[..., 3] = year - 2000
        return out[..., :bands]

    return pixels


def decode_coordinates(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(col mod 4096, row mod 4096)`` of every pixel of a coordinate-encoded image (``(..., >= 3)`` uint8)."""
    rgb = np.asarray(rgb, dtype=np.int64)
    cols = rgb[..., 0] | ((rgb[..., 2] >> 4) & 15) << 8
    rows = rgb[..., 1] | (rgb[..., 2] & 15) << 8
    return cols, rows


def _jpeg_tile(tile: np.ndarray, photometric: str, quality: int) -> bytes:
    """One JPEG tile stream: 4 bands as a 4-component JPEG, 3 bands as YCbCr, or as RGB without a colour
    transform and without the Adobe marker (component ids 0, 1, 2, as libtiff writes photometric RGB)."""
    from PIL import Image

    buffer = io.BytesIO()
    bands = tile.shape[2]
    if bands == 4:
        Image.fromarray(tile, "CMYK").save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()
    if bands != 3:
        raise ValueError(f"JPEG tiles need 3 or 4 bands, got {bands}")
    if photometric == "ycbcr":
        Image.fromarray(tile, "RGB").save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()
    Image.fromarray(tile, "RGB").save(buffer, "JPEG", quality=quality, keep_rgb=True)
    stream = bytearray(buffer.getvalue())
    out = bytearray(stream[:2])
    for marker, start, end in jpeg_segments(bytes(stream)):
        segment = bytearray(stream[start:end])
        if marker == 0xEE:  # drop the Adobe marker
            continue
        if marker == 0xC0:  # SOF0: component ids 'R','G','B' -> 0, 1, 2
            for i in range(segment[9]):
                segment[10 + 3 * i] = i
        if marker == 0xDA:  # SOS: the same ids
            for i in range(segment[4]):
                segment[5 + 2 * i] = i
        out += segment
    out += stream[end:]
    return bytes(out)


def _split_tables(streams: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Move the quantisation and Huffman tables (DQT, DHT) shared by every stream into one JPEGTables stream."""
    def tables_of(stream: bytes) -> bytes:
        return b"".join(stream[s:e] for m, s, e in jpeg_segments(stream) if m in (0xDB, 0xC4))

    shared = tables_of(streams[0])
    out = []
    for stream in streams:
        if tables_of(stream) != shared:
            out.append(stream)  # keep its own tables (a reader must handle both)
            continue
        segments = jpeg_segments(stream)
        kept = b"".join(stream[s:e] for m, s, e in segments if m not in (0xDB, 0xC4))
        out.append(stream[:2] + kept + stream[segments[-1][2]:])
    return b"\xff\xd8" + shared + b"\xff\xd9", out


def _encode_tiles(image: np.ndarray, tile: int, compression: str, predictor: int, photometric: str,
                  quality: int) -> tuple[list[bytes], bytes | None]:
    height, width, bands = image.shape
    padded = np.zeros((-(-height // tile) * tile, -(-width // tile) * tile, bands), dtype=np.uint8)
    padded[:height, :width] = image
    blocks = []
    for y in range(0, padded.shape[0], tile):
        for x in range(0, padded.shape[1], tile):
            block = np.ascontiguousarray(padded[y:y + tile, x:x + tile])
            if compression == "jpeg":
                blocks.append(_jpeg_tile(block, photometric, quality))
                continue
            if predictor == 2:
                block = block.copy()
                block[:, 1:] = block[:, 1:] - padded[y:y + tile, x:x + tile - 1]
            data = block.tobytes()
            blocks.append(zlib.compress(data, 6) if compression == "deflate" else data)
    if compression != "jpeg":
        return blocks, None
    tables, blocks = _split_tables(blocks)
    return blocks, tables


# (tag, TIFF type, values); type 2 ASCII / 7 UNDEFINED take bytes
Entry = tuple[int, int, Sequence[float] | bytes]
_FORMATS = {3: "H", 4: "I", 12: "d", 16: "Q", 2: "B", 7: "B"}


def _entry_size(typ: int) -> int:
    return struct.calcsize(_FORMATS[typ])


def _layout_ifds(ifds: list[list[Entry]], start: int, big: bool) -> list[int]:
    """The byte offset of each IFD when written from ``start`` (each followed by its out-of-line values)."""
    offsets, position = [], start
    inline, head, entry = (8, 8, 20) if big else (4, 2, 12)
    for entries in ifds:
        offsets.append(position)
        position += head + entry * len(entries) + inline
        for _tag, typ, values in entries:
            size = len(values) * _entry_size(typ)
            if size > inline:
                position += size + (size & 1)
    return offsets + [position]


def _write_ifds(ifds: list[list[Entry]], offsets: list[int], order: str, big: bool) -> bytes:
    inline = 8 if big else 4
    out = bytearray()
    for index, entries in enumerate(ifds):
        extra = bytearray()
        extra_start = offsets[index] + (8 if big else 2) + (20 if big else 12) * len(entries) + inline
        out += struct.pack(order + ("Q" if big else "H"), len(entries))
        for tag, typ, values in sorted(entries, key=lambda item: item[0]):
            payload = bytes(values) if isinstance(values, bytes) else struct.pack(
                order + _FORMATS[typ] * len(values), *values)
            if len(payload) <= inline:
                field_bytes = payload.ljust(inline, b"\x00")
            else:
                field_bytes = struct.pack(order + ("Q" if big else "I"), extra_start + len(extra))
                extra += payload + (b"\x00" if len(payload) & 1 else b"")
            out += struct.pack(order + ("HHQ" if big else "HHI"), tag, typ, len(values)) + field_bytes
        next_ifd = offsets[index + 1] if index + 1 < len(ifds) else 0
        out += struct.pack(order + ("Q" if big else "I"), next_ifd) + extra
    return bytes(out)


def _geokeys(epsg: int, raster_type: int) -> list[int]:
    geographic = 4000 <= epsg < 5000
    keys = [(1024, 2 if geographic else 1), (1025, raster_type), (2048 if geographic else 3072, epsg)]
    if not geographic:
        keys.append((3076, 9001))  # metres
    directory = [1, 1, 0, len(keys)]
    for key, value in keys:
        directory += [key, 0, 1, value]
    return directory


def cog_bytes(
    *,
    width: int = 1024,
    height: int = 1024,
    pixels: PixelFunction | None = None,
    bands: int = 4,
    epsg: int = 32618,
    origin: tuple[float, float] = (500000.0, 4400000.0),
    pixel_size: float = 0.6,
    tile: int = 256,
    compression: str = "deflate",
    predictor: int = 2,
    bigtiff: bool = False,
    byte_order: str = "<",
    overview: bool = True,
    photometric: str = "rgb",
    jpeg_quality: int = 90,
    model_transformation: bool = False,
    raster_type: int = 1,
    compression_code: int | None = None,
    planar: int = 1,
) -> bytes:
    """A tiled GeoTIFF as bytes. ``origin`` is the upper-left corner (easting, northing) of pixel (0, 0);
    ``compression`` is "none", "deflate" or "jpeg" (``predictor`` 2 applies to deflate); ``photometric`` "ycbcr"
    needs 3 bands and JPEG. ``model_transformation`` writes ModelTransformation instead of pixel scale +
    tiepoint; ``raster_type`` 2 (PixelIsPoint) ties the origin to the centre of pixel (0, 0).
    ``compression_code`` and ``planar`` only change the tags (for tests of the reader's errors)."""
    if compression not in COMPRESSION_CODES:
        raise ValueError(f"compression must be one of {sorted(COMPRESSION_CODES)}, got {compression!r}")
    if photometric == "ycbcr" and (compression != "jpeg" or bands != 3):
        raise ValueError("photometric 'ycbcr' needs compression 'jpeg' and 3 bands")
    pixels = pixels or coordinate_pixels(bands=bands)
    predictor = predictor if compression == "deflate" else 1
    big = bigtiff
    levels = [(width, height, 1)] + ([(-(-width // 2), -(-height // 2), 2)] if overview else [])
    encoded = []
    for level_w, level_h, step in levels:
        rows, cols = np.meshgrid(np.arange(level_h) * step, np.arange(level_w) * step, indexing="ij")
        image = np.asarray(pixels(cols, rows), dtype=np.uint8).reshape(level_h, level_w, bands)
        encoded.append(_encode_tiles(image, tile, compression, predictor, photometric, jpeg_quality))
    long_type = 16 if big else 4
    code = compression_code if compression_code is not None else COMPRESSION_CODES[compression]
    photometric_code = 6 if photometric == "ycbcr" else 2 if bands >= 3 else 1
    ifds: list[list[Entry]] = []
    for index, ((level_w, level_h, _), (blocks, tables)) in enumerate(zip(levels, encoded)):
        entries: list[Entry] = [
            (254, 4, [1 if index else 0]), (256, 4, [level_w]), (257, 4, [level_h]), (258, 3, [8] * bands),
            (259, 3, [code]), (262, 3, [photometric_code]), (277, 3, [bands]), (284, 3, [planar]),
            (322, 3, [tile]), (323, 3, [tile]), (324, long_type, [0] * len(blocks)),
            (325, long_type, [len(block) for block in blocks]), (339, 3, [1] * bands)]
        if predictor == 2:
            entries.append((317, 3, [2]))
        if bands > 3:
            entries.append((338, 3, [0] * (bands - 3)))
        if tables is not None:
            entries.append((347, 7, tables))
        if photometric == "ycbcr":
            entries.append((530, 3, [2, 2]))
        if index == 0:
            x0, y0 = origin
            if model_transformation:
                entries.append((34264, 12, [pixel_size, 0, 0, x0, 0, -pixel_size, 0, y0, 0, 0, 0, 0, 0, 0, 0, 1]))
            else:
                shift = 0.5 * pixel_size if raster_type == 2 else 0.0
                entries.append((33550, 12, [pixel_size, pixel_size, 0.0]))
                entries.append((33922, 12, [0.0, 0.0, 0.0, x0 + shift, y0 - shift, 0.0]))
            entries.append((34735, 3, _geokeys(epsg, raster_type)))
        ifds.append(entries)
    header_size = 16 if big else 8
    positions = _layout_ifds(ifds, header_size, big)
    data_start = positions[-1]
    cursor = data_start
    for entries, (blocks, _) in zip(ifds, encoded):
        offsets = []
        for block in blocks:
            offsets.append(cursor)
            cursor += len(block)
        entries[[tag for tag, _, _ in entries].index(324)] = (324, long_type, offsets)
    mark = b"II" if byte_order == "<" else b"MM"
    if big:
        header = mark + struct.pack(byte_order + "HHHQ", 43, 8, 0, positions[0])
    else:
        header = mark + struct.pack(byte_order + "HI", 42, positions[0])
    body = header + _write_ifds(ifds, positions, byte_order, big)
    assert len(body) == data_start, (len(body), data_start)
    return body + b"".join(block for blocks, _ in encoded for block in blocks)


def write_cog(path: str | os.PathLike, **options) -> Path:
    """Write :func:`cog_bytes` (same options) to ``path``."""
    path = Path(path)
    path.write_bytes(cog_bytes(**options))
    return path
