"""Which network searches images for faces (`DetectorConfig.search`): names and help only, so
that command lines are built without importing the detector."""

SEARCH_NETWORKS = ("retinaface", "yunet")
DEFAULT_SEARCH = "retinaface"
SEARCH_HELP = ("the network that searches images for faces: retinaface (default) or yunet "
               "(faster on photos and finds more faces, but reads a few genders per thousand "
               "differently; see the docs' Speed section); RetinaFace finds each face's points "
               "either way")


def check_search(search: str) -> str:
    """`search` if it is one of `SEARCH_NETWORKS`; else a ValueError naming the setting."""
    if search not in SEARCH_NETWORKS:
        raise ValueError(f"search must be one of {', '.join(SEARCH_NETWORKS)} (got {search!r})")
    return search
