"""People, not frames: face tracks in videos and streams, and one combined answer per person.

`combine` holds the combining rule (numpy only); `tracker` wraps norfair, imported on first
use (`pip install "agegender[track]"`); `session` tracks one video or stream and makes its
summary rows; `annotate` draws tracked frames into a video. Nothing here imports torch.
"""
