"""How the files in tests/data/formats were made (run once by hand; CI uses the committed files, not this script).

Sources, all from Debian 12 packages (see LICENSE.md here for each license):
  debian-policy 4.6.2.0   copyright-format-1.0.html -> pandoc 2.17 -> .docx, .odt, .epub;
                          fhs/fhs-3.0.pdf.gz page 8 -> pdftoppm -r 150 -gray -jpeg (top half) -> scanned-fhs.pdf
  coreutils, gzip         /usr/share/man/man1/ls.1.gz, gzip.1.gz (as shipped)
  libpam-modules          /usr/share/man/man5/access.conf.5.gz (decompressed: access.conf.5)
  git-doc 2.39.5          howto/*.txt: real messages from the git mailing list -> git-howto.mbox (mbox framing ours)
  libpython3.11-testsuite test/test_email/data/msg_02.txt (a Mailman digest) -> ppp-digest.eml,
                          msg_15.txt (a multipart without its start boundary) -> inside git-howto.mbox,
                          msg_05.txt -> Maildir/cur/ (named with ':2,S' by the tests)

    pandoc -f html -t docx -o copyright-format.docx copyright-format-1.0.html   (and -t odt, -t epub)
    pdftoppm -f 8 -l 8 -r 150 -gray -jpeg -jpegopt quality=60 -x 0 -y 0 -W 1275 -H 760 fhs-3.0.pdf fhs8
    python make_fixtures.py SRC   (SRC: the folder holding fhs8-08.jpg, git-doc's howto/ and test_email/data/)
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def image_pdf(jpeg: bytes, width: int, height: int, text_page: str) -> bytes:
    """A two-page PDF: page 1 a text page (a text layer: never OCR'd), page 2 only the scanned JPEG (no text)."""
    stream = f"BT /F1 14 Tf 72 720 Td ({text_page}) Tj ET".encode()
    scan = f"q {width * 72 // 150} 0 0 {height * 72 // 150} 0 0 cm /Im1 Do Q".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 6 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /XObject << /Im1 7 0 R >> >> "
        b"/Contents 8 0 R >>" % (width * 72 // 150, height * 72 // 150),
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Filter /DCTDecode /Length %d >>\nstream\n" % (width, height, len(jpeg)) + jpeg + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(scan) + scan + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def mbox(messages: list[tuple[str, bytes]]) -> bytes:
    """Messages framed as an mbox (mboxrd: body lines starting with From are escaped)."""
    out = b""
    for sender, raw in messages:
        body = b"\n".join(b">" + line if line.lstrip(b">").startswith(b"From ") else line for line in raw.split(b"\n"))
        out += f"From {sender} Thu Jan  1 00:00:00 2009\n".encode() + body.rstrip(b"\n") + b"\n\n"
    return out


def main(src: Path) -> None:
    jpeg = (src / "fhs8-08.jpg").read_bytes()
    (HERE / "scanned-fhs.pdf").write_bytes(image_pdf(jpeg, 1275, 760, "Cover sheet: the next page is a scan."))
    howto = src / "howto"
    email = src / "data"
    (HERE / "git-howto.mbox").write_bytes(
        mbox([
            ("gitster@pobox.com", (howto / "rebase-from-internal-branch.txt").read_bytes()),
            ("nobody@python.org", (email / "msg_15.txt").read_bytes()),
            ("torvalds@linux-foundation.org", (howto / "revert-a-faulty-merge.txt").read_bytes()),
            ("torvalds@linux-foundation.org", (howto / "recover-corrupted-blob-object.txt").read_bytes()),
        ])
    )  # fmt: skip
    (HERE / "ppp-digest.eml").write_bytes((email / "msg_02.txt").read_bytes())
    maildir = HERE / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
        (maildir / sub / ".gitkeep").touch()
    # Stored without its ':2,S' info suffix (no ':' in a Windows checkout); tests/test_formats.py adds it.
    (maildir / "cur" / "1230768000.M1P1.example").write_bytes((email / "msg_05.txt").read_bytes())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
