"""lmustream: streaming keyword spotting with LMUFormer and spiking LMUFormer."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so that `import lmustream` stays light.
    if name == "Detector":
        from lmustream.stream.detector import Detector

        return Detector
    raise AttributeError(f"module 'lmustream' has no attribute {name!r}")
