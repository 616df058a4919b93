"""whichvoice: tell which voice is speaking in a recording."""

from whichvoice.audio import SAMPLE_RATE, load_audio
from whichvoice.errors import WhichvoiceError

__version__ = "0.1.0"

__all__ = ["SAMPLE_RATE", "WhichvoiceError", "__version__", "load_audio"]
