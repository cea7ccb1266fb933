"""The SQLite patch library: dedup by content, provenance, atomic imports, lookups, the data home."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dx7tools import DX7Error, Voice, vmem_message, write_cartridge
from dx7tools.library import HOME_ENV, Library, resolve_home
from tests.conftest import PATCHES, random_voices


def snapshot(lib: Library):
    with sqlite3.connect(lib.path) as conn:
        return (conn.execute("SELECT * FROM voices ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM sources ORDER BY rowid").fetchall())


def test_import_dedups_by_content_and_keeps_provenance(tmp_path, rng):
    voices = random_voices(rng, 32)
    a, b = tmp_path / "a.syx", tmp_path / "b.syx"
    write_cartridge(a, voices)
    write_cartridge(b, voices[:16] + [voices[0].with_name("RENAMED")])  # the name counts
    lib = Library(tmp_path / "home")
    r1 = lib.import_files([a])
    assert (r1.files, r1.voices_read, r1.new, r1.duplicates) == (1, 32, 32, 0)
    r2 = lib.import_files([b])
    # 16 known + 1 renamed (new) + 15 INIT VOICE padding (one new, then duplicates)
    assert (r2.voices_read, r2.new, r2.duplicates) == (32, 2, 30)
    assert len(lib) == 34
    first = lib.get(r1.ids[0])
    assert [(Path(s.file).name, s.bank, s.slot) for s in first.sources] == [("a.syx", 0, 0), ("b.syx", 0, 0)]
    assert lib.import_files([a]).new == 0 and len(lib) == 34  # re-import adds nothing


def test_failed_import_leaves_the_library_exactly_as_it_was(tmp_path, rng):
    good = tmp_path / "good.syx"
    write_cartridge(good, random_voices(rng, 32))
    lib = Library(tmp_path / "home")
    lib.import_files([good])
    before = snapshot(lib)
    more = tmp_path / "more.syx"
    write_cartridge(more, random_voices(rng, 32))
    broken = tmp_path / "broken.syx"
    broken.write_bytes(vmem_message(random_voices(rng, 32))[:3000])
    with pytest.raises(DX7Error, match="broken.syx: truncated"):
        lib.import_files([more, broken])
    assert snapshot(lib) == before
    report = lib.import_files([more, broken], skip_bad=True)
    assert report.new == 32 and len(report.failed) == 1 and "broken.syx" in report.failed[0]


def test_directories_need_recursive(tmp_path, rng):
    folder = tmp_path / "carts"
    (folder / "sub").mkdir(parents=True)
    write_cartridge(folder / "one.syx", random_voices(rng, 2))
    write_cartridge(folder / "sub" / "two.SYX", random_voices(rng, 2))
    (folder / "README.txt").write_text("not a cartridge: skipped by a recursive import")
    lib = Library(tmp_path / "home")
    with pytest.raises(DX7Error, match="is a directory"):
        lib.import_files([folder])
    assert lib.import_files([folder], recursive=True).files == 2
    assert len(lib) == 5


def test_lookup_by_id_name_and_pattern(tmp_path):
    lib = Library(tmp_path / "home")
    lib.import_files([PATCHES / "dx7tools-starters.syx"])
    violin = lib.get("DDX7 VIOLN")
    assert violin.voice.algorithm == 2 and lib.get(str(violin.id)) == violin and lib.get(violin.id) == violin
    assert lib.get("ddx7   violn").id == violin.id  # case and runs of spaces ignored
    assert lib.get("CLARI").name == "CLARINET"  # a unique substring
    with pytest.raises(DX7Error, match="voices match 'DDX7'"):
        lib.get("DDX7")
    with pytest.raises(DX7Error, match="no voice named"):
        lib.get("NOTHING")
    with pytest.raises(DX7Error, match="no voice with id 999"):
        lib.get(999)
    assert [v.name for v in lib.voices(name="ddx7*")] == ["DDX7 VIOLN", "DDX7 FLUTE", "DDX7 TRUMP"]
    assert [v.name for v in lib.voices(algorithm=16)] == ["DDX7 FLUTE"]
    with pytest.raises(DX7Error, match="1-32"):
        lib.voices(algorithm=33)


def test_empty_library_reads_as_empty_without_creating_files(tmp_path):
    lib = Library(tmp_path / "home")
    assert lib.voices() == [] and len(lib) == 0
    assert not (tmp_path / "home").exists()


def test_damaged_library_is_a_clear_error_and_is_not_touched(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "library.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DX7Error, match="damaged"):
        Library(home).voices()
    with pytest.raises(DX7Error, match="damaged"):
        Library(home).add_voice(Voice.init())
    assert (home / "library.sqlite").read_bytes() == b"this is not sqlite" * 100


def test_home_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "env"))
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_home() == tmp_path / "env"
    monkeypatch.delenv(HOME_ENV)
    assert resolve_home().name == "dx7tools"


def test_add_voice_from_python(tmp_path):
    lib = Library(tmp_path / "home")
    vid = lib.add_voice(Voice.init().with_name("MINE"))
    assert lib.add_voice(Voice.init().with_name("MINE")) == vid
    assert lib.get("MINE").sources[0].file == "<python>"
