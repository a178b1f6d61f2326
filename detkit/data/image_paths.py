"""Where a dataset may point: its images live inside its image folder.

A COCO ``file_name``, a VOC ``<filename>`` or a line of a YOLO image list is text inside a file
someone else may have written. ``../../../etc/passwd`` or ``/home/me/.ssh/id_rsa`` would make
``detkit data check`` read, ``detkit train`` decode and ``detkit data convert`` hard-link a file
from anywhere on the machine into a dataset folder the user then shares. So every reader resolves
the names it is given through ``image_path``, and a name that leads outside the folder (an absolute
path elsewhere, ``..`` past the top) is refused unless the user opts in with
``--allow-outside-images`` (which sets ``$DETKIT_ALLOW_OUTSIDE_IMAGES=1``, so data-loader workers
and the processes of a distributed run follow the same policy).

The test is on the name, lexically: symbolic links inside the folder are followed (datasets are
often links into a larger collection), because a link is placed by whoever owns the folder, not
by an annotation file. Whatever a link leads to, the converters link or copy only files OpenCV
recognises as images (``data/formats/placing.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from detkit.errors import DataError, quoted

ALLOW_OUTSIDE_ENV = "DETKIT_ALLOW_OUTSIDE_IMAGES"


def outside_images_allowed() -> bool:
    return os.environ.get(ALLOW_OUTSIDE_ENV, "").strip().lower() in ("1", "true", "yes")


def allow_outside_images() -> None:
    """Opt this process, and every process it starts, into images outside their folder."""
    os.environ[ALLOW_OUTSIDE_ENV] = "1"


def leads_outside(folder: str | os.PathLike[str], name: str) -> bool:
    """Whether ``folder / name`` is not a path strictly inside ``folder`` (after ``..`` is resolved,
    without following links); a name with a NUL byte is never a path."""
    if "\0" in name:
        return True
    base = os.path.abspath(folder)
    joined = os.path.abspath(os.path.join(base, name))  # an absolute name replaces the folder
    return joined == base or os.path.commonpath([base, joined]) != base


def image_path(folder: str | os.PathLike[str], name: str, *, where: str) -> Path:
    """``folder / name``, or ``DataError`` when ``name`` leads outside ``folder`` and that is not allowed.

    ``where`` names the record for the message, e.g. ``annotations.json: image 12``.
    """
    if leads_outside(folder, name) and not outside_images_allowed():
        raise DataError(
            f"{where}: image path {quoted(name, 80)} leads outside the image folder {folder}; fix the path, pass "
            "--images with the folder that holds the images, "
            "or pass --allow-outside-images if they really live elsewhere"
        )
    return Path(folder) / name
