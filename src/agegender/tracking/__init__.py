"""People, not frames: face tracks in videos and streams, and one combined answer per person.

`combine` holds the combining rule (numpy only); `tracker` wraps norfair, imported on first
use (`pip install "agegender[track]"`); `session` tracks one video or stream; `summary` writes
the per-track rows. Nothing here imports torch.
"""
