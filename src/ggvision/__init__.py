"""Greengrass Vision: camera-classifier components for Greengrass v2 and a local IPC core."""

__version__ = "0.1.0"
