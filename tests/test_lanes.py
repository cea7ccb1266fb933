"""ddx7.export.lanes: the controller lane, the operators' AMS and output levels fitted together,
and the live output levels a Dexed receiver is sent on top of them."""

from __future__ import annotations

import numpy as np

from dx7tools.levels import FULL_SCALE, output_level_to_amplitude
from dx7tools.modulation import am_cut

from ddx7.export import lanes

T = 400
LEVELS = [90, 80, 70, 0, 0, 0]


def _phrase(opposed: bool = False):
    """A voice that holds its levels, and a model whose OP1 swells and fades by 24 dB and whose
    OP2 sits 6 dB under the voice; OP3 follows the voice, or with ``opposed`` fades where OP1
    swells (which one lane cannot do)."""
    voice = np.full((T, 6), np.nan)
    for k, ol in enumerate(LEVELS[:3]):
        voice[:, k] = output_level_to_amplitude(ol)
    voice[:20] = np.nan  # no note yet
    swell = -24 * np.abs(np.sin(np.linspace(0, np.pi, T)) - 1)  # 0 dB in the middle, -24 dB at the ends
    model = np.nan_to_num(voice.copy(), nan=0.0)
    model[:, 0] *= 10 ** (swell / 20)
    model[:, 1] *= 10 ** (-6 / 20)
    if opposed:
        model[:, 2] *= 10 ** ((-24 - swell) / 20)
    return voice, model


def _db(x):
    return 20 * np.log10(np.maximum(x, 1e-6))


def test_the_lane_carries_a_swell_the_voice_alone_cannot():
    voice, model = _phrase()
    fit = lanes.fit_lane(voice, model, LEVELS, levels=True)
    assert fit.ams[0] > 0  # the swelling operator listens to the lane
    assert fit.rms_db_before > 5 and fit.rms_db_after < fit.rms_db_before / 2
    notes = np.isfinite(fit.lane)
    assert not notes[:20].any() and notes[20:].all()
    # the lane follows the swell: low at the ends, high in the middle
    assert fit.lane[T // 2] > fit.lane[25] + 20 and fit.lane[T // 2] > fit.lane[-5] + 20


def test_live_output_levels_put_every_operator_on_the_model_through_the_lane():
    voice, model = _phrase(opposed=True)
    fit = lanes.fit_lane(voice, model, LEVELS, levels=True)
    live = lanes.live_output_levels(voice, model, fit, LEVELS)
    assert np.isnan(live[:20]).all() and np.isnan(live[:, 3:]).all()
    # play them: each frame's operator level at the live output level, then cut by the lane's EG bias
    ok = np.isfinite(live) & (live < 99) & (live > 20)
    ok[:, 3:] = False
    amp = voice * output_level_to_amplitude(np.clip(np.rint(np.nan_to_num(live)), 0, 99)) \
        / output_level_to_amplitude(np.maximum(LEVELS, 1))  # the voice's amplitudes were at LEVELS
    micro = FULL_SCALE + 256 * np.log2(np.maximum(np.nan_to_num(amp), 1e-12))
    values = np.clip(np.rint(np.nan_to_num(fit.lane)), 0, 127).astype(int)
    heard = np.exp2((am_cut(micro, fit.ams, lanes.bias_depths()[values]) - FULL_SCALE) / 256)
    error = np.abs(_db(heard[ok]) - _db(model[ok]))
    assert ok.sum() > T and np.percentile(error, 95) < 1.0  # whole levels: within a level's 0.75 dB
    # and without them (the lane alone) the same frames are further off
    alone = np.exp2((am_cut(lanes._micro(voice) + lanes.LEVEL_STEP * fit.level_shift, fit.ams,
                            lanes.bias_depths()[values]) - FULL_SCALE) / 256)
    assert np.sqrt(np.mean((_db(alone[ok]) - _db(model[ok])) ** 2)) > 2 * np.sqrt(np.mean(error ** 2))
