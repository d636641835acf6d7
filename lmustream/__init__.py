"""lmustream: streaming keyword spotting with LMUFormer and spiking LMUFormer."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so that `import lmustream` stays light.
    if name in ("Detector", "DetectorConfig"):
        from lmustream.stream import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'lmustream' has no attribute {name!r}")
