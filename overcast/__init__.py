"""Overcast: a secure cloud-bridge toolkit for network engineers."""

__version__ = "0.1.0"
