"""Datasets in their native formats → labelled records, splits and cached decoded faces."""

from agegender.data.base import FaceSource
from agegender.data.cache import CachedFaces, load_faces
from agegender.data.records import FaceRecord
from agegender.data.sources import open_source
from agegender.data.splits import assign_splits, find_split_file
from agegender.data.utkface import parse_utkface_name

__all__ = [
    "CachedFaces",
    "FaceRecord",
    "FaceSource",
    "assign_splits",
    "find_split_file",
    "load_faces",
    "open_source",
    "parse_utkface_name",
]
