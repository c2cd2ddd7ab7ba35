"""pi-monitor: a local infant-cry detector for a Raspberry Pi nursery microphone."""

__version__ = "0.1.0"
