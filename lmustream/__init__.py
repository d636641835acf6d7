"""lmustream: streaming keyword spotting with LMUFormer and spiking LMUFormer."""

__version__ = "0.1.0"
