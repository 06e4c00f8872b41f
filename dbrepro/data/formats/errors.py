"""The errors raised by the face data readers.

Both are ``ValueError`` subclasses, so callers that only care about "bad input" can catch
``ValueError``; every message names the file and the record, pair, image or line at fault.
"""

from __future__ import annotations


class FormatError(ValueError):
    """A file does not follow the format it claims (RecordIO, ``.bin`` pack, LFW pairs list)."""


class ImageDecodeError(FormatError):
    """An encoded image (a file, a RecordIO record, an entry of a ``.bin`` pack) cannot be decoded."""
