"""Step 4 of the spine (``dx7tools export`` / ``render``): a trained DDX7 run back to the DX7.

* :mod:`ddx7.export.voice` — the model's levels fitted to a DX7 voice (SysEx), and how close it comes.
* :mod:`ddx7.export.performance` — a recording's phrase as a performance (.mid) for that voice.
* :mod:`ddx7.export.render` — a .mid heard through dexed-py, note by note.
* :mod:`ddx7.export.run_export` — all of it for one run, its model loaded once (the command).

The run itself (finding it, its record, its model) is :class:`ddx7.run.Run`'s.
"""

from ddx7.export.performance import (BEND_RANGE, LEAD_IN_SECONDS, WIRE_BUDGET, PerformancePlan, export_performance,
                                     performance_features, plan_performance, write_performance)
from ddx7.export.render import render_midi
from ddx7.export.run_export import export_run
from ddx7.export.voice import POOR_FIT_DB, VoiceExport, baseline_voice, export_voice, fidelity, write_voice

__all__ = ["BEND_RANGE", "LEAD_IN_SECONDS", "POOR_FIT_DB", "PerformancePlan", "VoiceExport", "WIRE_BUDGET",
           "baseline_voice", "export_performance", "export_run", "export_voice", "fidelity", "performance_features",
           "plan_performance", "render_midi", "write_performance", "write_voice"]
