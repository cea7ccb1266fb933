"""The patch selector: first stage (numpy), second stage (synth fit), ranking, CLI, known answers."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from dx7tools.audio import HOP, SAMPLE_RATE as SR
from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.library import Library
from dx7tools.lattice import (group_voices, harmonic_f0, lattice_cost, make_excerpt, partial_lattice,
                               pitch_contour, spectral_peaks, voice_starts)
from dx7tools.voice import Voice
from ddx7.rank import ranking as select
from ddx7.synth import FMSynth


def _config(algorithm=1, coarse=(1, 1, 1, 1, 1, 1), fine=(0,) * 6, feedback=0, mode=(0,) * 6, name=""):
    return FixedConfig(algorithm, mode, coarse, fine, (7,) * 6, feedback, name)


def _render(config: FixedConfig, f0, index, n: int = 2048) -> np.ndarray:
    """f0: Hz, or (frames,) Hz per frame."""
    synth = FMSynth(config)
    frames = n // HOP
    pitch = torch.as_tensor(f0, dtype=torch.float32).expand(1, frames)
    with torch.no_grad():
        audio = synth(pitch, torch.tensor(index, dtype=torch.float32).expand(1, frames, 6))
    return audio[0].numpy()


# -- first stage ----------------------------------------------------------------------------------
def test_spectral_peaks_find_sinusoids_to_a_fraction_of_a_bin():
    t = np.arange(2048) / SR
    audio = np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 1234.5 * t)
    hz, db = spectral_peaks(audio, SR)
    assert len(hz) == 2
    assert abs(hz[0] - 440.0) < 1.0 and abs(hz[1] - 1234.5) < 1.0
    assert db[0] == pytest.approx(0.0, abs=0.5) and db[1] == pytest.approx(-20.0, abs=1.0)


def test_harmonic_f0_pins_a_bright_tone_to_a_fraction_of_a_cent():
    bright = _config(1, coarse=(1, 1, 1, 1, 1, 1), feedback=6)
    audio = _render(bright, 110.0, [1.0, 1.6, 1.0, 1.2, 0.8, 0.6])
    ex = make_excerpt(audio, 110.0 * 2 ** (7 / 1200), SR)      # a tracker 7 cents sharp
    assert ex.tracked_f0_hz == pytest.approx(110.0 * 2 ** (7 / 1200))
    assert abs(1200 * np.log2(ex.f0_hz / 110.0)) < 0.5
    # a near-sine: its one partial sets the pitch
    sine = np.sin(2 * np.pi * 523.25 * np.arange(2048) / SR)
    assert make_excerpt(sine, 525.0, SR).f0_hz == pytest.approx(523.25, abs=0.1)


def test_harmonic_f0_leaves_inharmonic_windows_to_the_tracker():
    t = np.arange(2048) / SR
    bell = sum(a * np.sin(2 * np.pi * f * t) for a, f in ((1.0, 220.0), (0.9, 311.0), (0.8, 587.0), (0.7, 843.0)))
    hz, db = spectral_peaks(bell, SR)
    assert harmonic_f0(hz, db, 220.0) is None
    assert make_excerpt(bell, 220.0, SR).f0_hz == 220.0
    assert harmonic_f0(np.zeros(0), np.zeros(0), 220.0) is None


def test_pitch_contour_follows_a_glide_and_irons_out_jitter():
    frames = 32
    glide = 220.0 * 2 ** (np.linspace(-10, 10, frames) / 1200)
    jitter = np.random.default_rng(0).normal(0, 3, frames)             # cents
    contour = pitch_contour(glide * 2 ** (jitter / 1200))
    assert contour.shape == (frames,)
    assert np.mean(np.log2(contour)) == pytest.approx(0.0, abs=1e-9)
    cents = 1200 * np.log2(contour)
    assert np.max(np.abs(cents - np.linspace(-10, 10, frames))) < 3.0
    assert np.all(np.diff(cents) > 0)
    with pytest.raises(DX7Error, match="3 or more voiced frames"):
        pitch_contour(np.array([220.0, 0.0, 220.0]))


def test_voice_starts_are_the_voices_own_envelope_levels():
    base = Voice.init()           # OP1 at output level 99, EG levels 99 99 99 0; the others silent
    starts = voice_starts([base], 261.63)
    assert starts.shape == (36, 6)        # 3 velocities x 12 moments
    held = starts[(starts[:, 0] > 0)]
    assert held[:, 0].max() == pytest.approx(2.0, abs=0.05)            # output level 99 = index 2
    assert np.all(starts[:, 1:] == 0.0)
    quieter = base.replace(op1_output_level=80)
    assert voice_starts([quieter], 261.63)[:, 0].max() < 0.5 * held[:, 0].max()
    assert voice_starts([base, quieter], 261.63, limit=10).shape == (10, 6)
    assert voice_starts([], 261.63).shape == (0, 6)
    with pytest.raises(DX7Error, match="pitch > 0"):
        voice_starts([base], 0.0)


def test_partial_lattice_of_a_two_operator_stack():
    # Algorithm 32 has six carriers; algorithm 31 stacks OP6 on OP5: carrier 1 x f0, modulator 2 x f0.
    config = _config(31, coarse=(1, 1, 1, 1, 1, 2))
    lattices = partial_lattice(config, 100.0, 8000.0)
    hz, order = lattices[4]  # OP5, the modulated carrier
    table = {round(h): int(o) for h, o in zip(hz, order)}
    assert table[100] == 0 and table[300] == 1 and table[500] == 2
    assert 200 not in table  # 100 +- 2n * 100 never lands on an even harmonic
    bare_hz, bare_order = lattices[0]
    assert list(np.round(bare_hz)) == [100.0] and list(bare_order) == [0.0]


def test_feedback_gives_its_loop_harmonics():
    config = _config(32, coarse=(1, 1, 1, 1, 1, 3), feedback=7)
    hz, order = partial_lattice(config, 100.0, 8000.0)[5]   # OP6 feeds back on itself
    assert {300.0, 600.0, 900.0} <= set(np.round(hz))
    assert partial_lattice(_config(32, coarse=(1, 1, 1, 1, 1, 3)), 100.0, 8000.0)[5][0].tolist() == [300.0]


def test_lattice_cost_prefers_the_configuration_that_made_the_sound():
    right = _config(31, coarse=(1, 1, 1, 1, 1, 3))
    wrong = _config(31, coarse=(1, 1, 1, 1, 1, 0), fine=(0, 0, 0, 0, 0, 41))   # 0.705: inharmonic
    audio = _render(right, 220.0, [0, 0, 0, 0, 2.0, 0.8])
    ex = make_excerpt(audio, 220.0, SR)
    assert lattice_cost(right, ex) < lattice_cost(wrong, ex) - 1.0
    assert lattice_cost(right, ex) < 0.5


def test_octave_placement():
    # A carrier at ratio 0.5 sounds an octave below the key: measured f0 = key / 2.
    low = _config(31, coarse=(0, 0, 0, 0, 0, 1))
    audio = _render(low, 440.0, [0, 0, 0, 0, 2.0, 0.5])     # key 440 Hz, fundamental 220 Hz
    ex = make_excerpt(audio, 220.0, SR)
    assert lattice_cost(low, ex, octave=1) < lattice_cost(low, ex, octave=0)
    assert low.transposed(1).ratios[:5] == (1.0,) * 5


def test_transposed_is_exact_or_refuses():
    c = _config(2, coarse=(0, 1, 2, 3, 4, 14))
    assert c.transposed(1).ratios == (1.0, 2.0, 4.0, 6.0, 8.0, 28.0)
    assert _config(2, coarse=(2, 4, 1, 2, 2, 8)).transposed(-1).ratios == (1.0, 2.0, 0.5, 1.0, 1.0, 4.0)
    with pytest.raises(DX7Error, match="cannot be moved"):
        c.transposed(-1)   # 0.5 cannot go down, 3 cannot halve
    with pytest.raises(DX7Error):
        _config(2, coarse=(16,) * 6).transposed(1)


def test_scaled_is_exact_or_refuses():
    chimes = _config(6, coarse=(4, 8, 3, 6, 2, 5), fine=(0, 0, 0, 0, 25, 0), feedback=7)   # ROM1A's CHIMES
    placed = chimes.scaled(0.4)
    assert placed.ratios == pytest.approx((1.6, 3.2, 1.2, 2.4, 1.0, 2.0), abs=1e-12)
    assert placed.coarse == (1, 2, 1, 2, 1, 2) and placed.fine == (60, 60, 20, 20, 0, 0)   # lowest fine
    assert placed.scaled(2.5).key == chimes.key and placed.feedback == 7
    fixed = _config(1, coarse=(2, 3, 1, 1, 1, 1), mode=(0, 1, 0, 0, 0, 0))
    assert fixed.scaled(0.5).coarse == (1, 3, 0, 0, 0, 0)            # a fixed-frequency operator stays
    with pytest.raises(DX7Error, match="OP1's ratio 4 times 0.1 has no exact DX7 setting"):
        chimes.scaled(0.1)                                            # 0.4 is below the lowest ratio, 0.5
    with pytest.raises(DX7Error, match="> 0"):
        chimes.scaled(0.0)


def test_a_configuration_whose_carriers_sit_off_the_key_is_also_placed_on_its_lowest_carrier():
    from dx7tools.lattice import OCTAVES, placed_on_carrier

    chimes = _config(6, coarse=(4, 8, 3, 6, 2, 5), fine=(0, 0, 0, 0, 25, 0), feedback=7)
    placed, factor = placed_on_carrier(chimes)
    assert factor == pytest.approx(0.4) and placed.key == chimes.scaled(0.4).key
    assert placed_on_carrier(_config(6, coarse=(4, 8, 1, 6, 2, 5))) is None   # a carrier on the key
    assert placed_on_carrier(_config(6, coarse=(0, 8, 2, 6, 4, 5))) is None   # carriers at octaves of it
    assert placed_on_carrier(_config(6, coarse=(3, 1, 3, 1, 3, 1))) is None   # 1/3 is not a DX7 ratio
    # Played at key 200 Hz, a tracker hears its 2.5 carrier, 500 Hz: no octave of the voice's own
    # configuration explains the window, the placed copy does.
    audio = _render(chimes, 200.0, [1.0, 0.3, 0.8, 0.3, 1.2, 0.3])
    ex = make_excerpt(audio, 500.0, SR)
    own = min(lattice_cost(chimes, ex, octave=o) for o in OCTAVES)
    assert lattice_cost(placed, ex) < 0.5 < own

    class E:
        def __init__(self, i, v):
            self.id, self.voice = i, v

    voices = [E(4, chimes.apply_to(Voice.init().with_name("CHIMES"))), E(2, Voice.init().with_name("PLAIN"))]
    groups = group_voices(voices)
    assert [(g.voice_ids, g.names, g.ratio_factor) for g in groups] == [([2], ["PLAIN"], 1.0), ([4], ["CHIMES"], 1.0),
                                                                       ([4], ["CHIMES"], pytest.approx(0.4))]
    assert groups[2].config.key == placed.key and groups[2].voices == groups[1].voices
    assert len(group_voices(voices, place_carriers=False)) == 2


def test_group_voices_scores_identical_configurations_once():
    base = Voice.init()
    a = base.with_name("A").replace(op1_output_level=99)
    b = base.with_name("B").replace(op1_output_level=50)   # same fixed configuration as A
    c = base.with_name("C").replace(op2_coarse=3)

    class E:
        def __init__(self, i, v):
            self.id, self.voice = i, v

    groups = group_voices([E(3, c), E(1, a), E(2, b)])
    assert [g.voice_ids for g in groups] == [[1, 2], [3]]
    assert groups[0].names == ["A", "B"]
    assert group_voices([E(1, a)], algorithm=5) == []


# -- second stage ---------------------------------------------------------------------------------
def test_spectral_distance_is_gain_invariant_and_zero_on_itself():
    x = torch.randn(2048, dtype=torch.float64)
    t = select.log_power_db(x)
    assert float(select.spectral_distance(t[None], t)) == pytest.approx(0.0, abs=1e-9)
    assert float(select.spectral_distance(select.log_power_db(3 * x)[None], t)) == pytest.approx(0.0, abs=1e-6)
    assert float(select.spectral_distance(select.log_power_db(torch.randn(2048))[None], t)) > 1.0


def test_fit_distance_recovers_a_known_configuration():
    right = _config(5, coarse=(1, 2, 1, 3, 2, 1), fine=(0, 0, 0, 0, 50, 0), feedback=4)
    wrong = _config(5, coarse=(1, 1, 1, 3, 1, 0), fine=(0, 41, 0, 17, 0, 42), feedback=0)   # inharmonic
    excerpts = []
    for f0, index in ((196.0, [1.6, 0.5, 0.8, 0.3, 1.0, 0.2]), (330.0, [1.2, 0.9, 0.0, 0.0, 1.5, 0.6])):
        excerpts.append(make_excerpt(_render(right, f0, index), f0, SR))
    d_right = select.fit_distance(right, excerpts)
    d_wrong = select.fit_distance(wrong, excerpts)
    assert d_right < 1.5 and d_right < 0.5 * d_wrong, (d_right, d_wrong)


def test_descent_probe_descends_from_where_a_new_model_starts():
    sines = _config(1)   # carriers OP1 and OP3 at ratio 1: with the modulators down, a sine
    excerpts = [make_excerpt(_render(sines, f0, [0.3, 0, 0, 0, 0, 0]), f0, SR) for f0 in (196.0, 330.0)]
    start = select.descent_probe(sines, excerpts, steps=0)   # the loss of a new model's levels
    reached = select.descent_probe(sines, excerpts)
    off = select.descent_probe(_config(1, fine=(50, 0, 50, 0, 0, 0)), excerpts)   # carriers at 1.5 x f0
    assert reached < 0.5 * start and reached < 0.7 * off, (start, reached, off)


def test_held_notes_render_exactly_as_the_synth():
    config = _config(4, coarse=(1, 2, 3, 1, 0, 7), fine=(0, 10, 0, 0, 50, 0), feedback=6)
    held = select.HeldNotes(config, 32)
    index = torch.rand(2, 3, 6, generator=torch.Generator().manual_seed(0)) * 2
    synth = FMSynth(config)
    for pitch in (torch.tensor([[110.0] * 3, [523.3] * 3]), torch.tensor([[110.0, 111.0, 112.0], [523.3, 520.0, 530.0]])):
        expected = synth(pitch.reshape(-1, 1).expand(-1, 32), index.reshape(-1, 1, 6).expand(-1, 32, 6))
        assert torch.equal(held.render(pitch, index), expected.reshape(2, 3, -1))
    glide = 220.0 * torch.linspace(1.0, 1.02, 32).expand(2, 3, 32)      # a pitch per frame
    expected = synth(glide.reshape(-1, 32), index.reshape(-1, 1, 6).expand(-1, 32, 6))
    assert torch.equal(held.render(glide, index), expected.reshape(2, 3, -1))


def test_fit_distance_absorbs_a_pitch_error_of_a_few_cents_and_refines_off_the_grid():
    config = _config(2, coarse=(1, 1, 1, 1, 1, 1), fine=(0, 0, 0, 0, 0, 0), feedback=5)
    index = [1.37, 0.61, 0.0, 0.0, 0.0, 0.0]   # off the fits' level grid
    ex = make_excerpt(_render(config, 220.0, index), 220.0, SR)
    off = make_excerpt(ex.audio, 220.0 * 2 ** (7 / 1200), SR)   # a tracker 7 cents sharp
    on_grid = select.fit_distance(config, [ex])
    assert select.fit_distance(config, [off]) < on_grid + 0.3
    assert select.fit_distance(config, [ex], refine=40) < 0.5 * on_grid


def test_fit_distance_starts_where_it_is_told():
    # A deeply modulated tone: from its own levels the fit lands on it, random starts alone need not.
    config = _config(1, coarse=(3, 3, 2, 1, 3, 7), feedback=6)
    index = [0.9, 1.7, 1.1, 1.9, 0.7, 0.4]
    ex = make_excerpt(_render(config, 110.0, index), 110.0, SR)
    told = select.fit_distance(config, [ex], n_random=4, starts=np.array([[index]]))
    assert told < 0.05
    assert told < select.fit_distance(config, [ex], n_random=4)


def test_fit_distance_stays_within_what_a_trained_model_can_play(monkeypatch):
    # FEEDBACK 7: DDX7 holds the feedback operator (OP6 here) at index 1 or below (feedback_cap);
    # a fit that drives it into chaos would score a sound the trained model cannot make.
    config = _config(1, coarse=(1, 1, 1, 1, 1, 1), feedback=7)
    index = [1.2, 1.0, 0.0, 0.0, 0.0, 2.0]      # OP6 at level 99: a chaotic loop into OP5 (silent)
    ex = make_excerpt(_render(config, 220.0, [1.2, 1.0, 1.0, 1.5, 1.0, 2.0]), 220.0, SR)
    seen = []
    render = select.HeldNotes.render

    def spy(self, pitch, idx, grad=False):
        seen.append(idx.detach().reshape(-1, 6).amax(0))
        return render(self, pitch, idx, grad)

    monkeypatch.setattr(select.HeldNotes, "render", spy)
    starts = np.array([[[1.2, 1.0, 1.0, 1.5, 1.0, 2.0], index]])
    capped = select.fit_distance(config, [ex], n_random=4, starts=starts, refine=10)
    highest = torch.stack(seen).amax(0)
    assert float(highest[5]) <= 1.0 + 1e-6 and float(highest.max()) <= 2.0 + 1e-6, highest
    seen.clear()
    free = select.fit_distance(config, [ex], n_random=4, starts=starts, refine=10, feedback_cap=False)
    assert float(torch.stack(seen).amax(0)[5]) > 1.0
    assert free < 0.05 < capped, (free, capped)


def test_fit_distance_follows_a_vibrato_on_the_tracked_contour():
    config = _config(5, coarse=(1, 1, 1, 2, 1, 3), feedback=5)
    index = [1.0, 1.5, 1.0, 0.8, 0.6, 0.3]
    frames = 32
    track = 220.0 * 2 ** (30 * np.sin(np.linspace(0, 2.2, frames)) / 1200)   # part of a 30-cent vibrato
    audio = _render(config, torch.tensor(track, dtype=torch.float32), index)
    mean_f0 = float(np.exp2(np.mean(np.log2(track))))
    flat = make_excerpt(audio, mean_f0, SR)
    tracked = make_excerpt(audio, mean_f0, SR, f0_track_hz=track)
    assert tracked.pitch_contour is not None and flat.pitch_contour is None
    d_tracked = select.fit_distance(config, [tracked], refine=20)
    assert d_tracked < 0.5 * select.fit_distance(config, [flat], refine=20), d_tracked


def test_pick_excerpts_falls_back_to_the_least_unsteady_windows():
    from ddx7.fit.train import Example

    frames = 200
    t = np.arange(frames * HOP) / SR
    steady = Example(np.sin(2 * np.pi * 220 * t).astype(np.float32), np.full(frames, 220.0),
                     np.full(frames, -20.0, np.float32), "steady.wav")
    trill_f0 = 440.0 * 2 ** (np.sign(np.sin(2 * np.pi * 4 * np.arange(frames) * HOP / SR + 0.3)) * 0.6 / 12)
    trill = Example(steady.audio, trill_f0, steady.loudness_db, "trill.wav")   # +-60 cents, 4 Hz
    picked = select.pick_excerpts([steady, trill], n=4)
    assert {e.source.split("@")[0] for e in picked} == {"steady.wav"}
    assert max(e.pitch_spread_cents for e in picked) < select.STEADY_CENTS[0]
    picked = select.pick_excerpts([trill], n=4)
    assert len(picked) == 4 and all(e.pitch_spread_cents == pytest.approx(120) for e in picked)
    glide = Example(steady.audio, 220.0 * 2 ** (np.arange(frames) / 8.0), steady.loudness_db, "glide.wav")
    with pytest.raises(DX7Error, match="no steady voiced stretch"):
        select.pick_excerpts([glide])


# -- ranking through the library and a corpus -------------------------------------------------------
@pytest.fixture(scope="module")
def known_answer(tmp_path_factory, dexed, hexter_dir):
    """A library of hexter's 128 ROM voices and a corpus played by one of them."""
    from ddx7.rank.known_answer import known_answer_corpus

    home = tmp_path_factory.mktemp("rank-home")
    lib = Library(home)
    lib.import_files([hexter_dir / "dx7_roms.dx7"])
    source = lib.get("E.PIANO 1")
    known_answer_corpus(home, "ka", source.voice, notes=(48, 55, 62, 69), velocities=(110, 70))
    return home, source


def test_rank_finds_the_voice_a_known_answer_corpus_was_played_with(known_answer):
    home, source = known_answer
    result = select.rank(home, "ka", budget=600, fit_all=True)
    n = result.stats["configurations"]
    assert result.complete and result.stats["full_fits"] == n and result.stats["quick_fits"] == 0
    assert result.stats["final_fits"] == select.FINAL_MAX     # a generous budget: the final fit goes on
    assert source.id in result.rows[0]["voices"], result.rows[:3]
    assert [r["rank"] for r in result.rows] == list(range(1, len(result.rows) + 1))
    final = select.FINAL_MAX
    assert [r["stage"] for r in result.rows] == [4] * final + [3] * (n - final)
    assert all(a["score"] <= b["score"] for a, b in zip(result.rows[:final - 1], result.rows[1:final]))
    assert result.stats["tie_break_fits"] <= select.TIE_SEEDS * final
    assert all(a["score"] <= b["score"] for a, b in zip(result.rows[final:], result.rows[final + 1:]))
    # every library voice appears once, grouped by configuration; a copy placed on its lowest
    # carrier (ROM1A's CHIMES) repeats its voices
    ids = [i for r in result.rows if r["ratio_factor"] == 1.0 for i in r["voices"]]
    assert sorted(ids) == sorted(v.id for v in Library(home).voices())
    placed = [r for r in result.rows if r["ratio_factor"] != 1.0]
    assert [r["names"] for r in placed] == [["CHIMES"]] and placed[0]["ratio_factor"] == pytest.approx(0.4)
    assert placed[0]["ratios"] == [1.6, 3.2, 1.2, 2.4, 1.0, 2.0]
    assert result.stats["voices"] == len(ids) and n == len(result.rows)
    saved = select.load_ranking(home, "ka")
    assert saved.rows[0]["voices"] == result.rows[0]["voices"]
    # what DDX7 trains with (paper-table, fit --voice auto): the top row at its octave
    top = FixedConfig.from_voice(source.voice).transposed(result.rows[0]["octave"])
    assert select.cached_top_config(home, "ka").key == top.key


def test_rank_breaks_ties_with_more_random_starts(known_answer):
    from dx7tools.lattice import ConfigGroup

    home, source = known_answer
    config = FixedConfig.from_voice(source.voice)
    twin = FixedConfig(config.algorithm, config.mode, config.coarse, config.fine,
                       (config.detune[0] + (1 if config.detune[0] < 14 else -1),) + config.detune[1:], config.feedback)
    groups = [ConfigGroup(config, [source.id], ["SOURCE"]), ConfigGroup(twin, [-1], ["TWIN"])]
    result = select.rank(home, "ka", budget=600, groups=groups, save=False)
    # a detune step apart: within the search's noise of each other, so both get every extra start
    assert result.stats["tie_break_fits"] == 2 * select.TIE_SEEDS
    assert "4 tie-break fits" in result.message
    assert [r["stage"] for r in result.rows] == [4, 4] and result.rows[0]["score"] <= result.rows[1]["score"]


def test_rank_on_a_large_library_quick_fits_then_fully_fits_the_best(known_answer):
    home, source = known_answer
    result = select.rank(home, "ka", budget=600, fit_all=False, candidates=8, save=False)
    s = result.stats
    assert result.complete and s["quick_fits"] == s["configurations"] - 1   # all but the timed full fit
    assert s["full_fits"] in (8, 9) and s["final_fits"] == min(select.FINAL_MAX, s["full_fits"])
    stages = [r["stage"] for r in result.rows]
    assert stages == sorted(stages, reverse=True) and stages.count(2) == s["configurations"] - s["full_fits"]
    assert source.id in result.rows[0]["voices"], result.rows[:3]


def test_rank_with_a_tiny_budget_returns_the_first_stage_and_says_so(known_answer):
    home, _ = known_answer
    result = select.rank(home, "ka", budget=0.01, save=False)
    assert not result.complete
    assert "first-stage (lattice) ranking only" in result.message
    assert all(r["stage"] == 1 for r in result.rows)


def test_rank_bad_input(tmp_path, known_answer):
    home, _ = known_answer
    with pytest.raises(DX7Error, match="library is empty"):
        select.rank(tmp_path / "empty", "ka")
    with pytest.raises(DX7Error, match="no corpus"):
        select.rank(home, "nope")
    with pytest.raises(DX7Error, match="algorithm"):
        select.rank(home, "ka", algorithm=33)
    with pytest.raises(DX7Error, match="budget"):
        select.rank(home, "ka", budget=0)
    with pytest.raises(DX7Error, match="no steady voiced"):
        select.pick_excerpts([])


def test_rank_refuses_a_corpus_without_voiced_frames(known_answer, tmp_path):
    from ddx7.data.corpus import add_corpus
    from dx7tools.audio import write_wav

    home, _ = known_answer
    noise = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.3
    write_wav(tmp_path / "noise.wav", noise, SR)
    add_corpus(home, "noise", audio_dir=tmp_path)
    with pytest.raises(DX7Error, match="no voiced frames|no steady voiced stretch"):
        select.rank(home, "noise")
    assert select.load_ranking(home, "noise") is None   # nothing saved


def test_rank_on_a_corpus_with_wide_vibrato_says_so(known_answer, tmp_path, run_cli):
    from ddx7.data.corpus import add_corpus
    from dx7tools.audio import write_wav

    home, _ = known_answer
    t = np.arange(3 * SR) / SR
    f0 = 330.0 * 2 ** (0.6 / 12 * np.sin(2 * np.pi * 6.0 * t))       # +-60 cents, 6 Hz
    phase = 2 * np.pi * np.cumsum(f0) / SR
    write_wav(tmp_path / "vibrato.wav", (0.5 * np.sin(phase) + 0.2 * np.sin(2 * phase)).astype(np.float32), SR)
    add_corpus(home, "vibrato", audio_dir=tmp_path)
    res = run_cli("rank", "--corpus", "vibrato", "--algorithm", "5", "--budget", "600", "--json",
                  "--home", str(home), use_home=False)
    assert res.returncode == 0, res.stderr
    assert "trill or wide vibrato" in res.stderr and len(res.json()) > 1
    saved = select.load_ranking(home, "vibrato")
    assert saved.complete and saved.stats["excerpt_pitch_spread_cents"] >= select.STEADY_CENTS[0]


def test_cli_rank_json_and_fit_voice_auto(known_answer, run_cli):
    home, source = known_answer
    res = run_cli("rank", "--corpus", "ka", "--top", "5", "--algorithm", "5", "--budget", "120", "--json",
                  "--home", str(home), use_home=False)
    assert res.returncode == 0, res.stderr
    rows = res.json()
    assert len(rows) == 5
    assert {"rank", "voices", "algorithm", "ratios", "score"} <= set(rows[0])
    assert rows[0]["rank"] == 1 and isinstance(rows[0]["voices"], list) and len(rows[0]["ratios"]) == 6
    assert {r["algorithm"] for r in rows} == {5} and source.id in rows[0]["voices"]

    table = run_cli("rank", "--corpus", "ka", "--budget", "0.01", "--home", str(home), use_home=False)
    assert table.returncode == 0
    assert "first-stage (lattice) ranking only" in table.stderr
    assert "score" in table.stdout and "stage" in table.stdout

    # a ranking whose budget ran out before the fits is no pick to train on: fit --voice auto says
    # how to rank with more time (a pick that went through the fits is trained: test_cli_train.py)
    fit = run_cli("fit", "--corpus", "ka", "--voice", "auto", "--steps", "2", "--crepe", "tiny", "--no-test-audio",
                  "--home", str(home), use_home=False)
    assert fit.returncode == 1 and "Traceback" not in fit.stderr
    [line] = fit.stderr.strip().splitlines()
    assert line.startswith("error: the saved ranking of 'ka' stopped after its first stage")
    assert "dx7tools rank --corpus ka --budget 600" in fit.stderr and not (home / "runs").exists()


def test_cli_rank_errors(run_cli):
    res = run_cli("rank", "--corpus", "violin")
    assert res.returncode == 1
    assert res.stderr.startswith("error:") and "library is empty" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_voice_auto_reuses_a_saved_ranking_only_if_made_for_the_runs_feedback_cap(tmp_path, monkeypatch):
    from ddx7.rank.choose import auto_config
    from dx7tools.lattice import ConfigGroup

    group = ConfigGroup(_config(2, coarse=(1, 2, 1, 1, 1, 1), feedback=7, name="CAPPED"), [3], ["CAPPED"])
    library = Library(tmp_path)
    mine = library.add_voice(Voice.init().with_name("CAPPED"))
    made_now = {"feedback_cap": True, "algorithm": None, "library_key": select.voices_key([mine])}
    saved = select.Ranking("ka", [{**select._row(group, 0.5, 4, 0.1, 0), "rank": 1}], True, "ok", made_now)
    select.save_ranking(tmp_path, saved)
    calls = []
    monkeypatch.setattr(select, "rank", lambda home, corpus, **kw: calls.append(kw) or saved)
    config, selection = auto_config(tmp_path, "ka")
    assert selection["reused_saved_ranking"] and not calls and config.key == group.config.key
    _, selection = auto_config(tmp_path, "ka", feedback_cap=False)
    assert not selection["reused_saved_ranking"] and calls[-1]["feedback_cap"] is False
    legacy = select.Ranking("ka", saved.rows, True, "ok", {})      # saved before these were recorded
    select.save_ranking(tmp_path, legacy)
    _, selection = auto_config(tmp_path, "ka")
    assert not selection["reused_saved_ranking"] and calls[-1]["feedback_cap"] is True
    # a ranking made for other voices, or for one algorithm only, is not reused
    for stats in ({**made_now, "library_key": select.voices_key([mine, mine + 1])}, {**made_now, "algorithm": 2}):
        select.save_ranking(tmp_path, select.Ranking("ka", saved.rows, True, "ok", stats))
        n = len(calls)
        _, selection = auto_config(tmp_path, "ka")
        assert not selection["reused_saved_ranking"] and len(calls) == n + 1


# -- paper-table's selector row ------------------------------------------------------------------
def test_paper_table_never_trains_on_a_first_stage_ranking(known_answer, tmp_path):
    from ddx7.evaluate.paper_table import plan_runs

    home, _ = known_answer
    lattice_only = select.rank(home, "ka", budget=0.01, save=False)     # the budget runs out before the fits
    assert lattice_only.stats["full_fits"] == 0 and lattice_only.rows[0]["stage"] == 1
    with pytest.raises(DX7Error, match="stopped after its first stage.*--budget 600"):
        lattice_only.pick()                                            # fit --voice auto refuses it too
    select.save_ranking(tmp_path, lattice_only)
    plans, notes = plan_runs(tmp_path, "ka", None, 2.0, None)
    assert "ddx7-top" not in [p.row for p in plans]
    [note] = [n for n in notes if "ddx7-top" in n]
    assert note.startswith("ka: ddx7-top skipped: the saved ranking of 'ka' stopped after its first stage")
    assert "dx7tools rank --corpus ka --budget 600" in note and lattice_only.rows[0]["names"][0] in note

    # the same rows, fitted: a complete ranking is used as it is ...
    fitted = [{**row, "stage": 4 if k < 2 else 3} for k, row in enumerate(lattice_only.rows)]
    select.save_ranking(tmp_path, select.Ranking("ka", fitted, True, "complete", {"full_fits": len(fitted)}))
    plans, notes = plan_runs(tmp_path, "ka", None, 2.0, None)
    top = FixedConfig.from_dict(fitted[0]["config"]).transposed(fitted[0]["octave"])
    assert plans[-1].row == "ddx7-top" and plans[-1].config.key == top.key
    assert not [n for n in notes if "ddx7-top" in n]
    # ... an incomplete one whose top row went through the fits is used with its message as a caveat
    select.save_ranking(tmp_path, select.Ranking("ka", fitted, False, "the budget ran out after 3 of 9 full fits",
                                                 {"full_fits": 3}))
    plans, notes = plan_runs(tmp_path, "ka", None, 2.0, None)
    assert plans[-1].row == "ddx7-top" and plans[-1].config.key == top.key
    assert [n for n in notes if "ddx7-top" in n] == [f"ka: ddx7-top uses {top.name.strip()!r}, but the selector's "
                                                     "ranking says: the budget ran out after 3 of 9 full fits"]


# -- the configuration a run trains with -----------------------------------------------------------
def test_fit_without_voice_on_ones_own_recordings_ranks_the_library_and_the_projects_cartridge(tmp_path, dexed):
    from dx7tools.sysex import parse_bytes
    from ddx7.rank.choose import PROJECT_CARTRIDGE, patch_file, choose_config, paper_config
    from ddx7.rank.known_answer import known_answer_corpus

    home = tmp_path / "home"
    cartridge = parse_bytes(patch_file(PROJECT_CARTRIDGE), PROJECT_CARTRIDGE)
    source = next(r.voice for r in cartridge.voices if r.voice.name.strip() == "CLARINET")
    known_answer_corpus(home, "mine", source, notes=(55, 62, 69), velocities=(100,))
    assert len(Library(home)) == 0

    config, selection, message = choose_config(home, "mine", None, None, budget=600)
    lib = Library(home)
    ids = selection["project_cartridge"]["voices"]
    assert sorted(v.id for v in lib.voices()) == ids and selection["project_cartridge"]["added"] == len(ids) == 10
    saved = select.load_ranking(home, "mine")
    assert selection["complete"] == saved.complete and not selection["reused_saved_ranking"]
    assert {v for r in saved.rows for v in r["voices"]} == set(ids)
    chosen = saved.rows[selection["chosen_rank"] - 1]
    assert config.key == FixedConfig.from_dict(chosen["config"]).transposed(chosen["octave"]).key
    assert lib.get("CLARINET").id in chosen["voices"], saved.rows[:3]
    first, hint = message.split("\n")
    assert "the selector picked rank 1, CLARINET" in first and "10 voices of the project's cartridge" in first
    assert hint.startswith("hint: the library holds only the project's cartridge")

    # the same library again: the saved ranking is reused
    _, again, _ = choose_config(home, "mine", None, None)
    assert again["reused_saved_ranking"] and again["project_cartridge"]["added"] == 0
    # once the library holds voices of one's own, the cartridge is not added again, the hint goes,
    # and the library is ranked anew (the saved ranking does not know the new voice)
    mine = lib.add_voice(Voice.init().with_name("MINE").replace(op2_coarse=3))
    config2, selection2, message2 = choose_config(home, "mine", None, None, budget=600)
    assert selection2["project_cartridge"]["added"] == 0 and not selection2["reused_saved_ranking"]
    assert mine in {v for r in select.load_ranking(home, "mine").rows for v in r["voices"]}
    assert config2.key == config.key and "\n" not in message2 and "with the project's cartridge" in message2

    # the other cases: a named voice, --voice auto, a known instrument
    named, none, msg = choose_config(home, "mine", "MINE", None)
    assert none is None and named.key == FixedConfig.from_voice(lib.get("MINE").voice).key and "MINE" in msg
    auto, auto_sel, msg = choose_config(home, "mine", "auto", None)
    assert auto.key == config.key and auto_sel["chosen_rank"] == 1 and msg.startswith("--voice auto: rank 1")
    paper, none, msg = choose_config(home, "mine", None, "violin")
    assert none is None and paper.key == paper_config("violin").key and "paper's configuration" in msg
    with pytest.raises(DX7Error, match="no voice|not found|no library voice") as err:
        choose_config(home, "mine", "NO SUCH VOICE", None)
    assert "\n" not in str(err.value)
