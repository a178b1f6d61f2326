"""detkit: the classic object detectors, trained, run, evaluated and timed side by side."""

__version__ = "0.1.0"
