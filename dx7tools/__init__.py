"""dx7tools: the DX7 domain in numpy — voices, SysEx, algorithms, envelopes, the patch library.

This package never imports torch (the torch side lives in ``ddx7``).
"""

from .errors import DX7Error, MissingExtra
from .params import PARAMETERS, Param
from .sysex import Cartridge, VoiceRecord, parse_bytes, read_file, vced_message, vmem_message, write_cartridge, write_single
from .voice import Voice

__version__ = "0.1.0"

__all__ = [
    "DX7Error",
    "MissingExtra",
    "PARAMETERS",
    "Param",
    "Cartridge",
    "VoiceRecord",
    "parse_bytes",
    "read_file",
    "vced_message",
    "vmem_message",
    "write_cartridge",
    "write_single",
    "Voice",
]
