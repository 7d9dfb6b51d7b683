"""Up-front checks of the input paths a command was given, before any work starts.

A missing path, an unreadable file, or a binary file named as a CSV is a ``UserError`` naming the
file, so the user learns in the first second, not after a long load (the loader itself would say
the same thing later, in a less direct way).
"""

from __future__ import annotations

from tradeconsole.core.errors import UserError, clip

__all__ = ["check_data_files", "check_input_path"]


def check_input_path(path: str, option: str, what: str = "file or directory") -> None:
    """An input file or directory the user named must exist (checked before any work)."""
    from pathlib import Path

    try:
        ok = Path(path).exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise UserError(f"{option} {clip(path, 200)}: {exc.strerror or 'not a usable path'}") from None
    if not ok:
        raise UserError(f"{option} {clip(path, 200)}: no such {what}")


def check_data_files(path: str) -> None:
    """Name a binary or unreadable data file up front: a CSV must start as UTF-8 text without NUL
    bytes and a Parquet file with its ``PAR1`` magic (the Parquet format's first four bytes)."""
    import codecs
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".csv", ".parquet") and f.is_file())
    elif p.is_file():
        files = [p]
    else:
        return  # the loader reports missing paths with its own message
    for f in files:
        try:
            with open(f, "rb") as fh:
                head = fh.read(65_536)
        except PermissionError:
            raise UserError(f"{clip(f, 200)}: cannot read the data file (permission denied)") from None
        if f.suffix.lower() == ".parquet":
            if head[:4] != b"PAR1":
                raise UserError(f"{clip(f, 200)}: not a Parquet file (no PAR1 header)")
            continue
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            bad = b"\x00" in head
        except UnicodeDecodeError:
            bad = True
        if bad:
            raise UserError(f"{clip(f, 200)}: binary data, not a CSV text file")
