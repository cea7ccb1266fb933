"""The real console script: import, list, show, bank — and bad input as one line, exit 1."""

from __future__ import annotations

import sqlite3

import pytest

from dx7tools import read_file, vmem_message
from tests.conftest import PATCHES, random_voices

STARTERS = PATCHES / "dx7tools-starters.syx"


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_import_list_show_bank_round_trip(run_cli, tmp_path):
    r = run_cli("import", STARTERS, "--json")
    assert r.returncode == 0, r.stderr
    report = r.json()
    assert report["voices_read"] == 32 and report["new"] == 10 and report["duplicates"] == 22
    assert report["warnings"] == [] and report["files"] == 1

    rows = run_cli("list", "--json").json()
    by_name = {row["name"]: row for row in rows}
    violin = by_name["DDX7 VIOLN"]
    assert violin["algorithm"] == 2 and violin["ratios"] == [1, 1, 1, 1, 3, 14] and violin["feedback"] == 7
    assert violin["fixed_hz"] == [None] * 6 and {"id", "name", "algorithm", "ratios", "feedback"} <= set(violin)
    assert by_name["DDX7 TRUMP"]["ratios"] == [1, 1, 1, 1, 3.18, 8.47]
    assert [row["name"] for row in run_cli("list", "--algorithm", "16", "--json").json()] == ["DDX7 FLUTE"]
    assert len(run_cli("list", "--name", "ddx7*", "--json").json()) == 3

    table = run_cli("list")
    assert table.returncode == 0 and "DDX7 FLUTE" in table.stdout and "1.53" in table.stdout

    shown = run_cli("show", "DDX7 FLUTE")
    assert shown.returncode == 0
    assert "OUTPUT LEVEL" in shown.stdout and "[6]" in shown.stdout and "LFO SPEED" in shown.stdout
    assert "envelopes (note 60" in shown.stdout and "  OP6 |" in shown.stdout
    data = run_cli("show", str(violin["id"]), "--json").json()
    assert data["parameters"]["algorithm"] == 2 and data["parameters"]["op6_coarse"] == 14
    assert len(data["parameters"]) == 155 and data["operators"][0]["number"] == 1
    assert "[1]" in data["diagram"]

    out = tmp_path / "mine.syx"
    r = run_cli("bank", "DDX7 VIOLN", "DDX7 FLUTE", "CLARINET", "-o", out)
    assert r.returncode == 0, r.stderr
    names = [rec.voice.name for rec in read_file(out).voices]
    assert names[:3] == ["DDX7 VIOLN", "DDX7 FLUTE", "CLARINET"] and names[3:] == ["INIT VOICE"] * 29
    single = tmp_path / "one.syx"
    assert run_cli("bank", "CLARINET", "--single", "-o", single).returncode == 0
    assert len(single.read_bytes()) == 163 and read_file(single).voices[0].voice.name == "CLARINET"


def test_home_from_environment(dx7tools_exe, run_cli, tmp_path):
    env_home = tmp_path / "envhome"
    r = run_cli("import", STARTERS, use_home=False, env={"DX7TOOLS_HOME": str(env_home)})
    assert r.returncode == 0, r.stderr
    assert (env_home / "library.sqlite").exists()


def test_import_summary_and_warnings(run_cli, tmp_path, rng):
    data = bytearray(vmem_message(random_voices(rng, 32)))
    data[4102] ^= 1  # stale checksum
    stale = tmp_path / "stale.syx"
    stale.write_bytes(bytes(data))
    r = run_cli("import", stale, STARTERS)
    assert r.returncode == 0
    assert "2 file(s): 64 voices read, 42 new, 22 duplicates, 1 warnings" in r.stdout
    assert "stale.syx" in r.stderr and "stale checksum" in r.stderr


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("just some text"), "not SysEx"),
        (lambda p: p.write_bytes(bytes([0xF0, 0x41, 0x10, 0x16, 0x12, 0xF7])), "not Yamaha"),
        (lambda p: p.write_bytes(vmem_message([])[:1000]), "truncated"),
        (lambda p: p.write_bytes(vmem_message([])[:500] + b"\x99" + vmem_message([])[501:]), "bit 7 set"),
        (lambda p: p.write_bytes(b"\xf0\x43\x00\x00\x01\x1b" + vmem_message([])[6:]), "header says"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(run_cli, home, tmp_path, make, expected):
    assert run_cli("import", STARTERS).returncode == 0
    before = sqlite3.connect(home / "library.sqlite").execute("SELECT COUNT(*) FROM sources").fetchone()
    bad = tmp_path / "bad.syx"
    make(bad)
    line = error_line(run_cli("import", STARTERS, bad))
    assert "bad.syx" in line and expected in line
    after = sqlite3.connect(home / "library.sqlite").execute("SELECT COUNT(*) FROM sources").fetchone()
    assert before == after


def test_name_with_control_characters(run_cli, tmp_path, rng):
    raw = bytearray(b"".join(v.to_vmem() for v in random_voices(rng, 32)))
    raw[118] = 0x01
    bad = tmp_path / "ctrl.dx7"
    bad.write_bytes(bytes(raw))
    line = error_line(run_cli("import", bad))
    assert "ctrl.dx7" in line and "control character 0x01" in line and "at byte 118" in line
    fixed = run_cli("import", bad, "--repair-names", "--json")
    assert fixed.returncode == 0 and fixed.json()["new"] == 32


def test_missing_file_and_unknown_voice(run_cli, tmp_path):
    assert "no such file" in error_line(run_cli("import", tmp_path / "nope.syx"))
    assert run_cli("import", STARTERS).returncode == 0
    assert "no voice named 'ZZZ'" in error_line(run_cli("show", "ZZZ"))
    assert "voices match" in error_line(run_cli("show", "DDX7"))
    assert "--single writes one voice" in error_line(run_cli("bank", "DDX7 VIOLN", "CLARINET", "--single", "-o", tmp_path / "x.syx"))
    assert "folder does not exist" in error_line(run_cli("bank", "CLARINET", "-o", tmp_path / "no" / "x.syx"))


def test_hexter_roms_import_lists_128_voices_as_dexed_shows(run_cli, hexter_dir, dexed):
    r = run_cli("import", hexter_dir / "dx7_roms.dx7", "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["voices_read"] == 128 and r.json()["new"] == 128
    rows = run_cli("list", "--json").json()
    data = (hexter_dir / "dx7_roms.dx7").read_bytes()
    expected = []
    for b in range(4):
        for slot in range(32):
            p = dexed.Patch.from_packed(data[(b * 32 + slot) * 128 : (b * 32 + slot + 1) * 128])
            expected.append((p.name.rstrip(), p.algorithm + 1))
    assert [(row["name"], row["algorithm"]) for row in rows] == expected
