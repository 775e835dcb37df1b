"""Turn command-line arguments (files, folders, glob patterns) into a list of image paths."""

from __future__ import annotations

import glob
import itertools
from dataclasses import dataclass
from pathlib import Path

from agegender.imageio import IMAGE_SUFFIXES
from agegender.inference.video import VIDEO_SUFFIXES


@dataclass(frozen=True)
class InputFile:
    """A file to predict and the root it was found under: the folder given on the command line,
    a file argument's own folder, or a glob pattern's folder before its first wildcard."""

    path: Path
    root: Path

    @property
    def relative(self) -> Path:
        """The path below its root (`--annotate` mirrors it): `photos/a/y.png` → `a/y.png` for
        the argument `photos`, `p/x.jpg` → `x.jpg` for the argument `p/x.jpg`."""
        try:
            return self.path.relative_to(self.root)
        except ValueError:
            return Path(self.path.name)


def expand_inputs(arguments: list[str]) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Files are taken as given (whatever their suffix: a bad one fails on decoding, by name);
    folders are searched recursively for image and video suffixes; patterns are globbed.

    `-` is standard input, read as one image. Returns the files in a stable order, each with
    its root (a file named twice keeps the first argument's), and (argument, reason) for
    arguments matching nothing.
    """
    files: list[InputFile] = []
    missing: list[tuple[str, str]] = []
    for argument in arguments:
        path = Path(argument)
        if argument == "-":
            files.append(InputFile(path, Path(".")))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                missing.append((argument, "folder holds no images or videos"))
            files.extend(InputFile(p, path) for p in found)
        elif path.exists():
            files.append(InputFile(path, path.parent))
        elif glob.has_magic(argument):
            found = sorted(Path(p) for p in glob.glob(argument, recursive=True)
                           if Path(p).is_file())
            if not found:
                missing.append((argument, "pattern matches no files"))
            files.extend(InputFile(p, _glob_root(argument)) for p in found)
        else:
            missing.append((argument, _why_missing(path)))
    first: dict[Path, InputFile] = {}
    for file in files:
        first.setdefault(file.path, file)
    return list(first.values()), missing


def _why_missing(path: Path) -> str:
    """Why a path that does not exist as a file or folder cannot be read: missing, a link
    that loops or leads nowhere, no permission."""
    try:
        path.stat()
    except FileNotFoundError:
        return "a link to nothing" if path.is_symlink() else "no such file or folder"
    except OSError as error:
        return (error.strerror or str(error)).lower()
    return "not a file or folder"


def _glob_root(pattern: str) -> Path:
    """The folder a pattern's matches lie under: its parts before the first wildcard."""
    return Path(*itertools.takewhile(lambda part: not glob.has_magic(part), Path(pattern).parts))
