"""Step 4 of the spine (``dx7tools export`` / ``render``): a trained DDX7 run back to the DX7.

* :mod:`ddx7.export.voice` — the model's levels fitted to a DX7 voice (SysEx), and how close it comes.
* :mod:`ddx7.export.performance` — a recording's phrase as a performance (.mid) for that voice.
"""

from ddx7.export.voice import (VoiceExport, baseline_voice, export_voice, fidelity, write_voice)
from ddx7.export.voice import export_performance, performance_features, render_midi
from ddx7.export.voice import (BEND_RANGE, LEAD_IN_SECONDS, POOR_FIT_DB, load_ddx7, resolve_run,  # noqa: F401
                               run_info)

__all__ = ["VoiceExport", "baseline_voice", "export_performance", "export_voice", "fidelity",
           "performance_features", "render_midi", "write_voice"]
