"""Reading members of zip-based formats (.docx, .odt, .epub) and gzip files without trusting their sizes.

A zip bomb declares small sizes or packs gigabytes into kilobytes; a member is read only up to MEMBER_LIMIT bytes
whatever its header says, the whole file up to TOTAL_LIMIT, and a member that expands more than MAX_RATIO times its
compressed size (past a megabyte) is refused before it is inflated. XML that declares entities is refused too
(entity expansion is the XML form of the same attack).
"""

from __future__ import annotations

import io
import zipfile
import zlib

from deepkb.errors import LoadError

MEMBER_LIMIT = 32 * 1024 * 1024  # bytes of one decompressed member
TOTAL_LIMIT = 128 * 1024 * 1024  # bytes decompressed from one file in all
MAX_RATIO = 200  # uncompressed / compressed, for members past RATIO_FLOOR bytes
RATIO_FLOOR = 1024 * 1024
MAX_MEMBERS = 20_000


class SafeZip:
    """A zip file whose members are read under the limits above; every refusal is a LoadError with the reason."""

    def __init__(self, data: bytes, what: str) -> None:
        self.what = what
        self.read_total = 0
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
            raise LoadError(f"corrupt {what} (not a readable zip file: {exc})") from exc
        if len(infos) > MAX_MEMBERS:
            raise LoadError(f"refused {what}: {len(infos)} files inside (at most {MAX_MEMBERS})")
        self.infos = {info.filename: info for info in infos}

    def names(self) -> list[str]:
        return list(self.infos)

    def has(self, name: str) -> bool:
        return name in self.infos

    def read(self, name: str) -> bytes:
        """One member's bytes; a LoadError when it is missing, damaged or expands past the limits."""
        info = self.infos.get(name)
        if info is None:
            raise LoadError(f"corrupt {self.what} ({name} is missing)")
        if info.file_size > MEMBER_LIMIT or (
            info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(1, info.compress_size)
        ):
            raise LoadError(self._bomb(name, info.file_size))
        left = min(MEMBER_LIMIT, TOTAL_LIMIT - self.read_total)
        try:
            with self.zip.open(info) as member:
                data = member.read(left + 1)
        except (
            zipfile.BadZipFile,
            zlib.error,
            NotImplementedError,
            RuntimeError,
            ValueError,
            OSError,
            EOFError,
        ) as exc:
            raise LoadError(f"corrupt {self.what} ({name}: {exc})") from exc
        if len(data) > left:  # the header lied about the size
            raise LoadError(self._bomb(name, len(data)))
        if len(data) > RATIO_FLOOR and len(data) > MAX_RATIO * max(1, info.compress_size):
            raise LoadError(self._bomb(name, len(data)))
        self.read_total += len(data)
        return data

    def _bomb(self, name: str, size: int) -> str:
        return (
            f"refused {self.what}: {name} expands to {size >> 20} MiB or more from {self.infos[name].compress_size} "
            f"bytes (a zip bomb?); limits: {MEMBER_LIMIT >> 20} MiB a member, {MAX_RATIO}x compression"
        )


def parse_xml(data: bytes, what: str):
    """An ElementTree root; XML that declares entities (billion laughs) or does not parse is a LoadError."""
    from xml.etree import ElementTree

    if b"<!ENTITY" in data:
        raise LoadError(f"refused {what}: its XML declares entities")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise LoadError(f"corrupt {what} (XML: {exc})") from exc


def gunzip(data: bytes, what: str, limit: int = MEMBER_LIMIT) -> bytes:
    """A gzip file's content, at most `limit` bytes (a gzip bomb is refused, not inflated)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise LoadError(f"corrupt {what} (gzip: {exc})") from exc
    if len(out) > limit:
        raise LoadError(f"refused {what}: it expands past {limit >> 20} MiB (a gzip bomb?)")
    return out
