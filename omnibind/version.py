"""The installed omnibind version: one lookup for the package, spaces, reports and the server."""
from importlib.metadata import PackageNotFoundError, version
try:
    __version__ = version("omnibind")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
