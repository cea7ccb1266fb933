"""Project-authored cartridges and fixed configurations, installed as ``dx7tools_patches``.

``dx7tools-starters.syx`` holds the paper's three DDX7 configurations (DDX7 VIOLN / FLUTE / TRUMP)
and a few more; ``paper_configs.json`` maps each default instrument to its voice. Rebuild the
cartridge with ``python patches/build.py``.
"""
