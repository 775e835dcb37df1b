"""onnxruntime sessions on the CPU, built one way for the model, the detector and the tools."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. in containers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_session(model: Path | str | bytes, threads: int, spinning: bool
                ) -> onnxruntime.InferenceSession:
    """A CPU session of `model` (a file or its bytes) on `threads` intra-op threads (0: all
    cores). `spinning=False` lets the threads sleep right after a run, so they do not steal
    the cores that another session (detector, model) runs on next. onnxruntime's warnings
    (such as a declared batch size of 1 that is run with more) are not printed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
