"""Small helpers shared across gcnet."""

from .file_io import AtomicWritePathManager, atomic_open, atomic_path, atomic_write
