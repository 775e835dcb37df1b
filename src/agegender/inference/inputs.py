"""Turn command-line arguments (files, folders, glob patterns) into a list of image paths."""

from __future__ import annotations

import glob
from pathlib import Path

from agegender.imageio import IMAGE_SUFFIXES
from agegender.inference.video import VIDEO_SUFFIXES


def expand_inputs(arguments: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files are taken as given (whatever their suffix: a bad one fails on decoding, by name);
    folders are searched recursively for image and video suffixes; patterns are globbed.

    Returns the paths in a stable order, and (argument, reason) for arguments matching nothing.
    """
    paths: list[Path] = []
    missing: list[tuple[str, str]] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                missing.append((argument, "folder holds no images or videos"))
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        elif glob.has_magic(argument):
            found = sorted(Path(p) for p in glob.glob(argument, recursive=True)
                           if Path(p).is_file())
            if not found:
                missing.append((argument, "pattern matches no files"))
            paths.extend(found)
        else:
            missing.append((argument, "no such file or folder"))
    return list(dict.fromkeys(paths)), missing
