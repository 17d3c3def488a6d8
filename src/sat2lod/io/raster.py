"""Raster I/O: reading and atomic writing of GeoTIFF / Cloud Optimized GeoTIFF.

Every writer here writes to a temporary file beside the target and renames it into place, so that an
interrupted job never leaves a half-written product that a rerun would take as done. Before the rename a raster
is flushed to disk and read back (header and last block of every band, compared with what was written): GDAL
reports an I/O error at close (a full disk) only on stderr, without raising, and leaves a truncated file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import rasterio.windows
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine

log = logging.getLogger(__name__)


class RasterReadError(RuntimeError):
    """A raster could not be read; the message names the file and what to do."""


class RasterWriteError(OSError):
    """A raster could not be written completely (disk full, I/O error); nothing was written at its path."""


@dataclass
class Raster:
    """An in-memory raster.

    Attributes:
        array: (H, W) or (B, H, W) array.
        transform: affine pixel -> map transform (pixel corner convention, as rasterio).
        crs: coordinate reference system, or None for sensor-geometry images.
        nodata: nodata value of the array (NaN for float products by convention), or None.
        tags: dataset-level metadata tags (strings), e.g. ``VERTICAL_DATUM``.
        band_tags: optional per-band tags.
    """

    array: np.ndarray
    transform: Affine
    crs: CRS | None
    nodata: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    band_tags: list[dict[str, str]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape[-2], self.array.shape[-1]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in map units."""
        h, w = self.shape
        return rasterio.transform.array_bounds(h, w, self.transform)[:4]  # type: ignore[return-value]

    def valid_mask(self) -> np.ndarray:
        """Boolean (H, W) mask of valid cells (first band when several)."""
        a = self.array if self.array.ndim == 2 else self.array[0]
        if self.nodata is None:
            return np.ones(a.shape, bool)
        if isinstance(self.nodata, float) and np.isnan(self.nodata):
            return ~np.isnan(a)
        return a != self.nodata


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files: give the product the usual permissions (0666 less the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def _open_for_reading(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The open rasterio dataset of ``path``; a missing file, or one GDAL cannot read (on opening or while
    reading within the block), raises :class:`RasterReadError` naming the file and what to do."""
    path = Path(path)
    if not path.exists():
        raise RasterReadError(
            f"{path}: file not found. Check the path in your config or rerun the step that makes it."
        )
    try:
        with rasterio.open(path) as ds:
            yield ds
    except RasterioIOError as exc:
        raise RasterReadError(
            f"{path}: not a readable raster ({exc}). The file is corrupt or truncated: delete it and "
            "re-download / regenerate it."
        ) from exc


def read_raster(
    path: str | os.PathLike[str],
    bands: list[int] | int | None = None,
    masked_to_nan: bool = False,
    window: rasterio.windows.Window | None = None,
) -> Raster:
    """Read a raster file, or a window of it.

    Args:
        path: GeoTIFF (or any GDAL raster) path.
        bands: 1-based band index or list; None reads all bands (a single band comes back 2-D).
        masked_to_nan: convert nodata cells to NaN (array becomes float32).
        window: the part to read (pixel offsets and size, inside the raster); the transform is then the
            window's. None reads the whole raster.

    Raises:
        RasterReadError: missing or corrupt file, with the path and a hint.
    """
    with _open_for_reading(path) as ds:
        if bands is None:
            arr = ds.read(window=window) if ds.count > 1 else ds.read(1, window=window)
        else:
            arr = ds.read(bands, window=window)
        nodata = ds.nodata
        tags = dict(ds.tags())
        band_tags = [dict(ds.tags(i)) for i in range(1, ds.count + 1)]
        transform = ds.transform if window is None else ds.window_transform(window)
        raster = Raster(arr, transform, ds.crs, nodata, tags, band_tags)
    if masked_to_nan and nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        a = raster.array.astype(np.float32)
        a[raster.array == nodata] = np.nan
        raster.array = a
        raster.nodata = float("nan")
    return raster


@dataclass
class RasterHeader:
    """What a raster file's header says: (bands, rows, cols), grid, nodata, dataset tags."""

    count: int
    shape: tuple[int, int]
    transform: Affine
    crs: CRS | None
    nodata: float | None
    tags: dict[str, str]


def raster_header(path: str | os.PathLike[str]) -> RasterHeader:
    """The header of a raster file (no pixel is read).

    Raises:
        RasterReadError: missing or corrupt file, with the path and a hint.
    """
    with _open_for_reading(path) as ds:
        return RasterHeader(ds.count, ds.shape, ds.transform, ds.crs, ds.nodata, dict(ds.tags()))


def raster_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(bands, rows, cols) of a raster file, read from its header only.

    Raises:
        RasterReadError: missing or corrupt file, with the path and a hint.
    """
    h = raster_header(path)
    return h.count, *h.shape


class WindowReader:
    """An open raster for many windowed reads (streamed statistics, per-object windows): the file is opened
    once, each :meth:`read` decodes only the blocks under its window. Made by :func:`open_windows`.

    Attributes:
        header: the file's header (bands, shape, grid, nodata, tags).
    """

    def __init__(self, ds: Any, path: Path) -> None:
        self._ds = ds
        self._path = path
        self.header = RasterHeader(ds.count, ds.shape, ds.transform, ds.crs, ds.nodata, dict(ds.tags()))

    def read(self, window: rasterio.windows.Window, band: int = 1, masked_to_nan: bool = True) -> Raster:
        """One band of ``window`` (pixel offsets and size, inside the raster) as a 2-D :class:`Raster` on the
        window's grid; ``masked_to_nan``: nodata cells become NaN (float32 array).

        Raises:
            RasterReadError: the file cannot be decoded there, naming it.
        """
        try:
            arr = self._ds.read(band, window=window)
        except RasterioIOError as exc:
            raise RasterReadError(
                f"{self._path}: not a readable raster ({exc}). The file is corrupt or truncated: delete it and "
                "re-download / regenerate it."
            ) from exc
        nodata = self.header.nodata
        if masked_to_nan:
            a = arr.astype(np.float32)
            if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
                a[arr == nodata] = np.nan
            arr, nodata = a, float("nan")
        return Raster(arr, self._ds.window_transform(window), self.header.crs, nodata, self.header.tags)


@contextlib.contextmanager
def open_windows(path: str | os.PathLike[str], cache_mb: int = 16) -> Iterator[WindowReader]:
    """A :class:`WindowReader` on ``path`` for the duration of the block; GDAL's block cache is held to
    ``cache_mb`` meanwhile (its default, 5 % of the RAM, would keep every block read: memory growing with the
    area streamed).

    Raises:
        RasterReadError: missing or corrupt file, with the path and a hint.
    """
    with rasterio.Env(GDAL_CACHEMAX=int(cache_mb) * 2**20), _open_for_reading(path) as ds:
        yield WindowReader(ds, Path(path))


def block_windows(shape: tuple[int, int], block_px: int) -> Iterator[rasterio.windows.Window]:
    """Windows of ``block_px`` x ``block_px`` cells (smaller at the right and bottom edges) covering a grid of
    ``shape`` (rows, cols), row by row."""
    h, w = shape
    for r0 in range(0, h, block_px):
        for c0 in range(0, w, block_px):
            yield rasterio.windows.Window(c0, r0, min(block_px, w - c0), min(block_px, h - r0))


def sample_step(shape: tuple[int, ...], max_px: int) -> int:
    """Sampling step (cells) that shows a grid of ``shape`` in at most ``max_px`` cells a side."""
    return max(1, math.ceil(max(shape) / max(int(max_px), 1)))


def sampled_blocks(
    shape: tuple[int, int], step: int, block_px: int = 1024
) -> Iterator[tuple[rasterio.windows.Window, tuple[slice, slice]]]:
    """Blocks of about ``block_px`` cells of a grid of ``shape``, aligned to ``step``, each with the slot its
    cells ``[::step, ::step]`` fill in the grid's sampled array ``a[::step, ::step]`` (ceil(H / step),
    ceil(W / step)): a whole-grid sample assembled block by block."""
    for win in block_windows(shape, step * max(1, block_px // step)):
        r0, c0 = int(win.row_off) // step, int(win.col_off) // step
        yield (
            win,
            (
                slice(r0, r0 - (-int(win.height) // step)),
                slice(c0, c0 - (-int(win.width) // step)),
            ),
        )


def read_sampled(
    path: str | os.PathLike[str],
    max_px: int,
    band: int = 1,
    masked_to_nan: bool = True,
    block_px: int = 1024,
) -> tuple[np.ndarray, RasterHeader, int]:
    """Every ``step``-th row and column of one band (``a[::step, ::step]`` of the whole band, step =
    :func:`sample_step`), read in blocks of about ``block_px`` cells aligned to the step (:func:`sampled_blocks`):
    memory is the output plus one block, whatever the raster's size (a preview of a whole-scene mosaic).

    Returns:
        (the sampled array (ceil(H / step), ceil(W / step)), float32 NaN nodata with ``masked_to_nan``, else the
        file's dtype), the file's header, step).

    Raises:
        RasterReadError: missing or corrupt file, with the path and a hint.
    """
    with open_windows(path) as r:
        h, w = r.header.shape
        step = sample_step((h, w), max_px)
        out: np.ndarray | None = None
        for win, slot in sampled_blocks((h, w), step, block_px):
            a = r.read(win, band, masked_to_nan).array[::step, ::step]
            if out is None:
                out = np.empty((-(-h // step), -(-w // step)), a.dtype)
            out[slot] = a
        header = r.header
    if out is None:
        raise RasterReadError(f"{path}: the raster has no cell; regenerate it.")
    return out, header, step


def write_raster(
    path: str | os.PathLike[str],
    array: np.ndarray,
    transform: Affine,
    crs: CRS | str | int | None,
    nodata: float | None = None,
    tags: dict[str, Any] | None = None,
    band_tags: list[dict[str, Any]] | None = None,
    cog: bool = False,
    rpcs: Any = None,
    compress: str = "deflate",
    level: int | None = None,
) -> Path:
    """Write a (H, W) or (B, H, W) array atomically as a GeoTIFF (tiled) or a COG.

    Args:
        crs: CRS object, EPSG int or string; None for sensor-geometry images (use ``rpcs`` then).
        nodata: nodata value stored in the file (use NaN for float height products).
        tags: dataset tags; heights must carry ``VERTICAL_DATUM``.
        cog: write a Cloud Optimized GeoTIFF (GDAL COG driver, with overviews).
        rpcs: a ``rasterio.rpc.RPC`` to store as RPC tags (raw sensor images; ``transform`` is then ignored
            and no geotransform is written).
        compress, level: GDAL codec ("deflate", "zstd", "lzw", ...) and its level (None: GDAL's default; floats
            get the floating-point predictor). Intermediate products use ("zstd", 1): lossless, 4x faster to
            write than deflate's default level at the same size on DSM tiles.
    """
    arr = array if array.ndim == 3 else array[np.newaxis]
    count, height, width = arr.shape
    if isinstance(crs, int):
        crs = CRS.from_epsg(crs)
    elif isinstance(crs, str):
        crs = CRS.from_user_input(crs)
    profile = _gtiff_profile((count, height, width), arr.dtype, transform, crs, nodata, compress, level)
    if rpcs is not None:
        # a raw sensor image is located by its RPCs alone: no geotransform, no CRS
        del profile["transform"]
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            if cog:
                # Write a plain tiled GTiff in memory, then let the COG driver copy it (overviews + layout).
                with rasterio.MemoryFile() as mem:
                    with mem.open(**profile) as ds:
                        _fill(ds, arr, tags, band_tags)
                    with mem.open() as src:
                        _copy_to_cog(src, tmp, arr.dtype, compress, level)
            else:
                with rasterio.open(tmp, "w", **profile, **({"rpcs": rpcs} if rpcs is not None else {})) as ds:
                    _fill(ds, arr, tags, band_tags)
        except (RasterioIOError, CPLE_BaseError, OSError) as exc:
            raise _write_error(path, f"{type(exc).__name__}: {exc}") from exc
        verify_written(tmp, arr, nodata, tags, path)
    return path


#: side (cells) of the GeoTIFF / COG blocks every writer here uses
BLOCK_CELLS = 256


def write_raster_blocks(
    path: str | os.PathLike[str],
    blocks: Iterable[tuple[rasterio.windows.Window, np.ndarray]],
    shape: tuple[int, int, int],
    dtype: Any,
    transform: Affine,
    crs: CRS | str | int | None,
    nodata: float | None = None,
    tags: dict[str, Any] | None = None,
    cog: bool = True,
    compress: str = "deflate",
    level: int | None = None,
    cache_mb: int = 16,
    rpcs: Any = None,
    band_tags: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a raster block by block, atomically, with memory bounded by the block, not the raster: the streamed
    twin of :func:`write_raster` (same file for the same data: same profile, codec and COG options).

    The blocks go into a tiled GeoTIFF beside ``path`` (zstd level 1, lossless: a staging file), which the GDAL
    COG driver then copies block by block into the COG with its overviews; GDAL's block cache is capped to
    ``cache_mb`` meanwhile (its default, 5 % of the machine's RAM, would otherwise grow with the raster: at 64 MB
    the mosaic's peak RSS still rose 130 -> 192 MB from 0.36 to 5.76 km2, at 16 MB 130 -> 151 MB, flat to
    23 km2, for the same CPU time; bench/mosaic_memory.py).

    Args:
        blocks: (window, array (B, h, w) or (h, w)) pairs covering the raster, each cell once; windows aligned on
            multiples of ``BLOCK_CELLS`` write fastest. Consumed lazily: a block is computed when written.
        shape: (bands, rows, cols) of the raster.
        dtype: numpy dtype of the arrays.
        cog: write a Cloud Optimized GeoTIFF (else a tiled GeoTIFF, deflate as asked).
        rpcs: RPC tags of a raw sensor image (no geotransform then; only with ``cog=False``).
        band_tags: per band, its tags (e.g. ``NAME``), as :func:`write_raster`.
        Other arguments as :func:`write_raster`.
    Raises:
        RasterWriteError: disk full or I/O error (nothing written at ``path``), as :func:`write_raster`.
    """
    count, height, width = shape
    dtype = np.dtype(dtype)
    if isinstance(crs, int):
        crs = CRS.from_epsg(crs)
    elif isinstance(crs, str):
        crs = CRS.from_user_input(crs)
    profile = _gtiff_profile(shape, dtype, transform, crs, nodata, compress, level)
    if rpcs is not None:
        if cog:
            raise ValueError(
                "write_raster_blocks: a sensor image with RPCs is written as a GeoTIFF (cog=False)"
            )
        del profile["transform"]  # a raw sensor image is located by its RPCs alone
    # the block the read-back check compares (the last of the written file, see _last_block), kept as written
    last = rasterio.windows.Window(
        (width - 1) // BLOCK_CELLS * BLOCK_CELLS,
        (height - 1) // BLOCK_CELLS * BLOCK_CELLS,
        width - (width - 1) // BLOCK_CELLS * BLOCK_CELLS,
        height - (height - 1) // BLOCK_CELLS * BLOCK_CELLS,
    )
    want = np.zeros((count, last.height, last.width), dtype)

    def fill(ds: Any) -> None:
        for win, block in blocks:
            b = block if block.ndim == 3 else block[np.newaxis]
            ds.write(b.astype(dtype, copy=False), window=win)
            r0, r1 = max(win.row_off, last.row_off), min(win.row_off + win.height, height)
            c0, c1 = max(win.col_off, last.col_off), min(win.col_off + win.width, width)
            if r1 > r0 and c1 > c0:
                want[:, r0 - last.row_off : r1 - last.row_off, c0 - last.col_off : c1 - last.col_off] = b[
                    :, r0 - win.row_off : r1 - win.row_off, c0 - win.col_off : c1 - win.col_off
                ]
        if tags:
            ds.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, bt in enumerate(band_tags or [], start=1):
            ds.update_tags(i, **{k: str(v) for k, v in bt.items()})

    path = Path(path)
    with atomic_path(path) as tmp, rasterio.Env(GDAL_CACHEMAX=int(cache_mb) * 2**20):
        try:
            if cog:
                stage = tmp.with_name(tmp.name + ".stage.tif")  # beside tmp, removed whatever happens
                try:
                    stage_profile = dict(profile, tiled=True, blockxsize=BLOCK_CELLS, blockysize=BLOCK_CELLS)
                    stage_profile.update(compress="zstd", zstd_level=1)
                    stage_profile.pop("zlevel", None)
                    with rasterio.open(stage, "w", **stage_profile) as ds:
                        fill(ds)
                    with rasterio.open(stage) as src:
                        _copy_to_cog(src, tmp, dtype, compress, level)
                finally:
                    stage.unlink(missing_ok=True)
            else:
                extra = {"rpcs": rpcs} if rpcs is not None else {}
                with rasterio.open(tmp, "w", **dict(profile, tiled=True), **extra) as ds:
                    fill(ds)
        except (RasterioIOError, CPLE_BaseError, OSError) as exc:
            raise _write_error(path, f"{type(exc).__name__}: {exc}") from exc
        _verify(tmp, shape, dtype, nodata, tags, path, lambda win: want if win == last else None)
    return path


def _gtiff_profile(
    shape: tuple[int, int, int],
    dtype: Any,
    transform: Affine,
    crs: CRS | None,
    nodata: float | None,
    compress: str,
    level: int | None,
) -> dict[str, Any]:
    """GTiff creation profile of a (bands, rows, cols) raster: tiled 256 when both sides reach it, the
    floating-point predictor for floats under deflate / zstd / lzw, the codec's level when given."""
    count, height, width = shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": compress,
    }
    if height >= BLOCK_CELLS and width >= BLOCK_CELLS:
        profile.update(tiled=True, blockxsize=BLOCK_CELLS, blockysize=BLOCK_CELLS)
    if np.dtype(dtype) in (np.float32, np.float64) and compress.lower() in ("deflate", "zstd", "lzw"):
        profile["predictor"] = 3
    if level is not None:
        profile["zstd_level" if compress.lower() == "zstd" else "zlevel"] = int(level)
    return profile


def _copy_to_cog(src: Any, dst: Path, dtype: Any, compress: str, level: int | None) -> None:
    """GDAL COG driver copy of the open dataset ``src`` to ``dst`` (overviews by averaging for floats)."""
    rasterio.shutil.copy(
        src,
        dst,
        driver="COG",
        COMPRESS=compress.upper(),
        BLOCKSIZE=BLOCK_CELLS,
        OVERVIEW_RESAMPLING="AVERAGE" if np.dtype(dtype).kind == "f" else "NEAREST",
        **({"LEVEL": int(level)} if level is not None else {}),
    )


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a (H, W) uint8 array as a single-band PNG (no georeferencing), atomically."""
    h, w = array.shape
    with (
        atomic_path(path) as tmp,
        rasterio.open(tmp, "w", driver="PNG", width=w, height=h, count=1, dtype="uint8") as ds,
    ):
        ds.write(array.astype(np.uint8), 1)
    return Path(path)


def band_interpretations(path: str | os.PathLike[str]) -> list[str]:
    """Colour interpretation of each band of a raster file (``red``, ``green``, ``blue``, ``alpha``, ``gray``,
    ``undefined``, ...; GDAL names, lower case), e.g. to drop the alpha band of an RGBA PNG."""
    path = Path(path)
    if not path.exists():
        raise RasterReadError(f"{path}: file not found. Check the path.")
    with rasterio.open(path) as ds:
        return [c.name.lower() for c in ds.colorinterp]


def _write_error(path: Path, reason: str) -> RasterWriteError:
    free = shutil.disk_usage(path.parent).free
    return RasterWriteError(
        f"{path}: the raster could not be written completely ({reason}); nothing was written there. "
        f"{free / 1e6:.1f} MB free in {path.parent}: free disk space (or fix the I/O error) and rerun."
    )


def _last_block(ds: Any) -> rasterio.windows.Window:
    bh, bw = ds.block_shapes[0]
    r0, c0 = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
    return rasterio.windows.Window(c0, r0, ds.width - c0, ds.height - r0)


def verify_written(
    tmp: Path, arr: np.ndarray, nodata: float | None, tags: dict[str, Any] | None, path: Path
) -> None:
    """Flush ``tmp`` to disk and read it back: size, band count, dtype, nodata, tags and the last block of every
    band must be what was written (``arr``: (B, H, W)).

    Raises:
        RasterWriteError: naming ``path`` (the final product, not yet written) and the reason.
    """
    _verify(
        tmp,
        arr.shape,
        arr.dtype,
        nodata,
        tags,
        path,
        lambda win: arr[:, win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width],
    )


def _verify(
    tmp: Path,
    shape: tuple[int, ...],
    dtype: Any,
    nodata: float | None,
    tags: dict[str, Any] | None,
    path: Path,
    expected: Callable[[rasterio.windows.Window], np.ndarray | None],
) -> None:
    """:func:`verify_written` given the (B, H, W) ``shape`` and ``dtype`` written and ``expected``: the data
    written in a window (the file's last block), or None when the writer did not keep that window."""

    def fail(reason: str) -> RasterWriteError:
        return _write_error(path, reason)

    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with rasterio.open(tmp) as ds:
            if (ds.count, ds.height, ds.width) != tuple(shape) or ds.dtypes[0] != str(np.dtype(dtype)):
                raise fail(f"read back as {ds.count}x{ds.height}x{ds.width} {ds.dtypes[0]}")
            same_nodata = (ds.nodata is None and nodata is None) or (
                ds.nodata is not None
                and nodata is not None
                and (ds.nodata == nodata or (np.isnan(ds.nodata) and np.isnan(nodata)))
            )
            got_tags = ds.tags()
            if not same_nodata or any(got_tags.get(k) != str(v) for k, v in (tags or {}).items()):
                raise fail("header read back differs (nodata or tags)")
            win = _last_block(ds)
            got = ds.read(window=win)
    except RasterWriteError:
        raise
    except (RasterioIOError, OSError) as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from exc
    want = expected(win)
    if want is None:
        raise fail(f"its last block {win} is not the one the writer kept (layout differs from the one asked)")
    if not np.array_equal(got, want, equal_nan=np.dtype(dtype).kind == "f"):
        raise fail("the last block read back differs from the data")


def _fill(
    ds: Any, arr: np.ndarray, tags: dict[str, Any] | None, band_tags: list[dict[str, Any]] | None
) -> None:
    ds.write(arr)
    if tags:
        ds.update_tags(**{k: str(v) for k, v in tags.items()})
    for i, bt in enumerate(band_tags or [], start=1):
        ds.update_tags(i, **{k: str(v) for k, v in bt.items()})


def paste_tiles(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    transform: Affine,
    shape: tuple[int, int],
    crs: object,
    dtype: np.dtype | type,
    nodata: float,
    tags: dict[str, str] | None = None,
    block: int = 1024,
    band_tags: list[dict[str, str]] | None = None,
) -> str:
    """Assemble rasters that each cover their own window of a grid (the tile cores of per-tile jobs, which do
    not overlap) into the COG ``out`` on that grid, block by block: memory bounded by ``block``, not the area.
    Cells no raster covers are ``nodata``. The same file as :func:`write_raster` (``cog=True``) of the whole
    array (:func:`write_raster_blocks`).

    Args:
        paths: the tile rasters (``count`` bands, ``dtype``), on the grid's resolution and alignment, inside it.
        transform, shape, crs: the output grid (rows, cols).
        tags: the output's tags; None = those of the tiles, which must then all be equal.
        band_tags: the output's per-band tags (e.g. ``NAME``); None = none.
    Raises:
        ValueError: a tile off the grid or in another CRS, or tiles with different tags (outputs of different
            runs), naming the file.
    """
    if not paths:
        raise ValueError("no tile raster to assemble: the tile grid is empty (check the AOI and the views)")
    sources, count, own_tags = [], None, tags
    for p in paths:
        head = raster_header(p)
        # upper-left cell of the tile in the output grid
        r0 = int(round((transform.f - head.transform.f) / transform.a))
        c0 = int(round((head.transform.c - transform.c) / transform.a))
        off_grid = (
            abs(head.transform.a - transform.a) > 1e-9
            or abs(head.transform.e - transform.e) > 1e-9
            or abs((head.transform.c - transform.c) / transform.a - c0) > 1e-6
            or abs((transform.f - head.transform.f) / transform.a - r0) > 1e-6
        )
        outside = r0 < 0 or c0 < 0 or r0 + head.shape[0] > shape[0] or c0 + head.shape[1] > shape[1]
        if off_grid or outside or head.crs != crs:
            raise ValueError(
                f"{p}: not a window of the output grid (transform {tuple(transform)[:6]}); rerun its job"
            )
        if own_tags is None:
            if tags is None:
                tags = head.tags
            elif head.tags != tags:
                raise ValueError(
                    f"{p}: tags differ from {paths[0]}'s (tiles of different runs); rerun its job"
                )
        count = count or head.count
        sources.append((Path(p), r0, c0, head.shape))
    extents = np.array([(r, c, r + s[0], c + s[1]) for _, r, c, s in sources])

    def blocks() -> Iterator[tuple[rasterio.windows.Window, np.ndarray]]:
        for row0 in range(0, shape[0], block):
            for col0 in range(0, shape[1], block):
                h, w = min(block, shape[0] - row0), min(block, shape[1] - col0)
                arr = np.full((count, h, w), nodata, dtype)
                hit = (
                    (extents[:, 0] < row0 + h)
                    & (extents[:, 2] > row0)
                    & (extents[:, 1] < col0 + w)
                    & (extents[:, 3] > col0)
                )
                for i in np.flatnonzero(hit):
                    path, r, c, _ = sources[i]
                    ra, ca = max(row0, r), max(col0, c)
                    rb, cb = min(row0 + h, extents[i, 2]), min(col0 + w, extents[i, 3])
                    win = rasterio.windows.Window(ca - c, ra - r, cb - ca, rb - ra)
                    sub = read_raster(path, window=win).array
                    arr[:, ra - row0 : rb - row0, ca - col0 : cb - col0] = sub.reshape(
                        count, rb - ra, cb - ca
                    )
                yield rasterio.windows.Window(col0, row0, w, h), arr

    write_raster_blocks(
        out,
        blocks(),
        (count, *shape),
        dtype,
        transform,
        crs,
        nodata=nodata,
        tags=tags,
        cog=True,
        band_tags=band_tags,
    )
    log.info("%d tiles assembled into %s (%d x %d)", len(sources), out, shape[1], shape[0])
    return str(out)
