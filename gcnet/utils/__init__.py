"""Small helpers shared across gcnet."""
from .file_io import atomic_path, atomic_write
