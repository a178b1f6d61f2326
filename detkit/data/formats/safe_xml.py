"""Parsing untrusted XML annotation files with the standard library, without entity expansion.

``xml.etree`` expands entities declared in a document's DTD, so a few hundred bytes can expand to
gigabytes ("billion laughs") or pull in a local file (external entities). An annotation file has
no use for a DTD, so any document declaring one is refused before parsing (defusedxml, which does
the same, is not a dependency).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from detkit.errors import DataError
from detkit.io import read_regular_bytes

MAX_XML_BYTES = 16 << 20  # a VOC annotation file is a few kilobytes; 16 MiB is a file gone wrong

# "<!DOCTYPE" opens the only place entities can be declared; "<!ENTITY" is checked too in case
# a parser is ever lenient. Both in every encoding expat reads.
_FORBIDDEN = tuple(
    token.encode(encoding) for token in ("<!DOCTYPE", "<!ENTITY") for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)


def parse_xml_file(path: Path, *, what: str) -> ET.Element:
    """The root element of the XML file at ``path``; ``DataError`` naming the file when it is
    missing, unreadable, malformed or declares a DTD. ``what`` names the file's role."""
    try:
        data = read_regular_bytes(path, max_bytes=MAX_XML_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found; add the file or remove it from the split list") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read {what} ({error.strerror}); check its permissions") from None
    if any(token in data for token in _FORBIDDEN):
        raise DataError(
            f"{path}: {what} declares a DTD or entities, which detkit refuses to expand; "
            "remove the <!DOCTYPE ...> block"
        )
    try:
        return ET.fromstring(data)
    except ET.ParseError as error:
        line, column = error.position
        raise DataError(
            f"{path}: malformed XML at line {line} column {column + 1}; fix or regenerate the {what}"
        ) from None
    except (ValueError, LookupError) as error:  # e.g. an encoding declaration expat does not know
        raise DataError(f"{path}: unreadable XML ({error}); save the {what} as UTF-8") from None
