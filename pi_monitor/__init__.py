"""pi-monitor: a local infant-cry detector for a Raspberry Pi nursery microphone."""

import os

# numpy's OpenBLAS starts a thread per core and lets them spin between calls. The feature
# matrix product of one window (13 frames) is big enough to wake them: 27 % of a core instead
# of 1.4 % when listening live. Set here, before anything imports numpy, so every entry point
# (service, replay, tests) runs single-threaded as the systemd unit does; the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# onnxruntime 1.29 and later send usage telemetry to Microsoft from Linux too, and keep a device
# id and an event cache in ~/.cache/Microsoft; a nursery monitor promises that nothing leaves the
# house. Both variables (1.29 read the first, 1.32 the second) must be set before onnxruntime
# initialises, so here too.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")

__version__ = "0.1.0"
