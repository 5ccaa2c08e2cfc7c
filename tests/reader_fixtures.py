"""Small generators of archive files for reader tests (no binary data is committed).

Each helper writes into a path the test owns (tmp_path), mimicking one real format closely
enough to exercise the readers: THEMIS ASF CDFs via cdflib's writer, PNGs with patched headers,
tar shards with arbitrary (also hostile) member names.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from datetime import datetime, timezone

import numpy as np
from PIL import Image

CDF_EPOCH_1970_MS = 62167219200000.0


def cdf_epoch(t: datetime) -> float:
    """Aware datetime -> CDF_EPOCH (ms since 0000-01-01)."""
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return CDF_EPOCH_1970_MS + delta.total_seconds() * 1000.0


def write_asf_cdf(
    path,
    frames: np.ndarray,
    times: list[datetime],
    site: str = "test",
    virtual_epoch: bool = False,
    ends: list[datetime] | None = None,
) -> None:
    """A THEMIS-like level-1 ASF CDF: thg_asf_SITE (uint16 records) + thg_asf_SITE_epoch.

    virtual_epoch: as THEMIS writes it when the epoch is left to comp_themis_epoch: one epoch
    record of 0, plus _epoch0 (1970) and _time (seconds since 1970) per record. `ends` adds
    _tend (exposure ends, seconds since 1970).
    """
    from cdflib.cdfwrite import CDF

    frames = np.asarray(frames, dtype=np.uint16)
    spec = {"Majority": "row_major", "Encoding": 6}
    cdf = CDF(str(path), cdf_spec=spec, delete=True)
    try:
        cdf.write_globalattrs(
            {"Logical_source": {0: f"thg_l1_asf_{site}"}, "Project": {0: "THEMIS"}}
        )
        var = f"thg_asf_{site}"
        cdf.write_var(
            {
                "Variable": var,
                "Data_Type": 12,  # CDF_UINT2
                "Num_Elements": 1,
                "Rec_Vary": True,
                "Dim_Sizes": list(frames.shape[1:]),
                "Compress": 6,
                "Block_Factor": 2,
            },
            var_attrs={"FILLVAL": [65535, "CDF_UINT2"], "DEPEND_0": f"{var}_epoch"},
            var_data=frames,
        )
        epochs = [0.0] if virtual_epoch else [cdf_epoch(t) for t in times]
        _write_scalar(cdf, f"{var}_epoch", 31, epochs)  # CDF_EPOCH
        if virtual_epoch:
            _write_scalar(cdf, f"{var}_epoch0", 31, [CDF_EPOCH_1970_MS], rec_vary=False)
            _write_scalar(cdf, f"{var}_time", 45, [_unix(t) for t in times])  # CDF_REAL8
        if ends is not None:
            _write_scalar(cdf, f"{var}_tend", 45, [_unix(t) for t in ends])
    finally:
        cdf.close()


def _unix(t: datetime) -> float:
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()


def _write_scalar(cdf, name: str, data_type: int, values, rec_vary: bool = True) -> None:
    spec = {
        "Variable": name,
        "Data_Type": data_type,
        "Num_Elements": 1,
        "Rec_Vary": rec_vary,
        "Dim_Sizes": [],
    }
    cdf.write_var(spec, var_data=np.array(values, dtype=np.float64))


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (CRC fixed up) over a 1x1 image's data."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    # signature (8) + length (4) + b"IHDR" (4) + 13 bytes of IHDR data + CRC (4)
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def make_tar(path, members) -> None:
    """members: (name, bytes) for files, or (name, None, "symlink"/"dir") for other kinds."""
    with tarfile.open(path, "w") as tf:
        for m in members:
            name, data = m[0], m[1]
            kind = m[2] if len(m) > 2 else "file"
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tf.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def hostile_tar_gz(path, claimed: int, after, kind: str = "gnu-longname", fill: bytes = b"\0"):
    """A .tar.gz whose first member carries an extended header declaring `claimed` bytes (a GNU
    long name, a GNU long link name or a pax header: `kind`), written in 1 MiB pieces so the
    file is small to make; then the members `after` ((name, bytes) pairs) as usual.

    What the header precedes is a 1-byte member "victim.png" (its data is not an image)."""
    import gzip as _gzip

    types = {
        "gnu-longname": tarfile.GNUTYPE_LONGNAME,
        "gnu-longlink": tarfile.GNUTYPE_LONGLINK,
        "pax": tarfile.XHDTYPE,
    }
    head = tarfile.TarInfo("././@LongLink" if kind.startswith("gnu") else "PaxHeader/victim")
    head.type = types[kind]
    head.size = claimed
    with open(path, "wb") as raw, _gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as gz:
        gz.write(head.tobuf(tarfile.GNU_FORMAT))
        piece = fill * (1 << 20)
        left = claimed
        while left > 0:
            gz.write(piece[: min(left, len(piece))])
            left -= len(piece)
        gz.write(b"\0" * (-claimed % 512))
        victim = tarfile.TarInfo("victim.png")
        victim.size = 1
        gz.write(victim.tobuf(tarfile.GNU_FORMAT) + b"x" + b"\0" * 511)
        for name, data in after:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            gz.write(info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512))
        gz.write(b"\0" * 1024)
