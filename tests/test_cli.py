"""The real console script: import, list, show, bank — and bad input as one line, exit 1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dx7tools import DX7Error, read_file, vmem_message
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


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a table the CLI printed (rich's box drawing), each a list of stripped cells."""
    return [[cell.strip() for cell in line.strip()[1:-1].split("│")]
            for line in stdout.splitlines() if line.strip().startswith("│")]


def test_list_table_and_json_with_filters(run_cli):
    assert run_cli("import", STARTERS).returncode == 0
    everything = run_cli("list", "--json").json()
    assert len(everything) == 10
    filters = {
        ("--algorithm", "16"): lambda v: v["algorithm"] == 16,
        ("-n", "viol"): lambda v: "viol" in v["name"].lower(),                   # a substring, any case
        ("-a", "2", "--name", "DDX7*"): lambda v: v["algorithm"] == 2 and v["name"].startswith("DDX7"),
        ("--name", "no such voice"): lambda v: False,
    }
    for args, keep in filters.items():
        expected = [v for v in everything if keep(v)]
        assert len(expected) < len(everything) and (expected or args[-1] == "no such voice")
        assert run_cli("list", *args, "--json").json() == expected, args
    for args in ((), ("-a", "2", "--name", "DDX7*")):
        rows = [v for v in everything if filters.get(args, lambda v: True)(v)]
        table = run_cli("list", *args)
        assert table.returncode == 0 and table.stdout.splitlines()[0].strip() == f"{len(rows)} voice(s)", args
        cells = []
        for v in rows:
            ops = [f"{r:g}" if r is not None else f"{hz:.4g}Hz" for r, hz in zip(v["ratios"], v["fixed_hz"])]
            src = v["sources"][0]
            cells.append([str(v["id"]), v["name"], str(v["algorithm"]), *ops, str(v["feedback"]),
                          f"{Path(src['file']).name}:{src['bank']}:{src['slot']}"])
        assert table_rows(table.stdout) == cells, args
    assert "algorithm must be 1-32, got 33" in error_line(run_cli("list", "--algorithm", "33"))


def corpus_files(folder: Path) -> tuple[dict, dict[str, bytes]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return manifest, {s["file"]: (folder / s["file"]).read_bytes() for s in manifest["segments"]}


def test_corpus_build_and_list(run_cli, home, tmp_path):
    assert run_cli("corpus", "list", "--json").json() == []
    r = run_cli("corpus", "build", "violin", "--minutes", "0.05", "--json")
    assert r.returncode == 0, r.stderr
    info = r.json()
    folder = home / "corpora" / "violin"
    assert info["name"] == "violin" and info["path"] == str(folder)
    manifest, files = corpus_files(folder)
    segments = manifest["segments"]
    assert segments and manifest["kind"] == "builtin" and manifest["instrument"] == "violin"
    # what the printed summary says is what is on disk
    for split in ("train", "valid", "test"):
        assert info["segments"][split] == sum(s["split"] == split for s in segments)
        assert info["durations"][split] == pytest.approx(sum(s["duration"] for s in segments if s["split"] == split),
                                                         abs=1e-3)
    # each segment: 16 kHz mono, as long as the manifest says; together at least the minutes asked
    peak = 0.0
    for seg in segments:
        audio, sr = soundfile.read(folder / seg["file"], dtype="float32", always_2d=True)
        assert sr == 16000 and audio.shape[1] == 1 and len(audio) / 16000 == pytest.approx(seg["duration"], abs=0.01)
        peak = max(peak, float(np.abs(audio).max()))
    assert sum(s["duration"] for s in segments) >= 0.05 * 60
    assert peak == pytest.approx(0.9, abs=1e-4)  # normalised to 0.9 over the whole corpus
    # the same seed renders the same corpus, byte for byte
    other = tmp_path / "other-home"
    assert run_cli("corpus", "build", "violin", "--minutes", "0.05", "--home", other, use_home=False).returncode == 0
    assert corpus_files(other / "corpora" / "violin")[1] == files
    # a second corpus of that name is refused and changes nothing
    line = error_line(run_cli("corpus", "build", "violin", "--minutes", "0.05"))
    assert "'violin' already exists" in line and "--overwrite" in line
    assert corpus_files(folder)[1] == files

    table = run_cli("corpus", "build", "flute", "--minutes", "0.05")
    assert table.returncode == 0, table.stderr
    flute, _ = corpus_files(home / "corpora" / "flute")
    assert table.stdout.splitlines()[0].strip() == "corpus flute"
    assert table_rows(table.stdout) == [
        [split, str(sum(s["split"] == split for s in flute["segments"])),
         f"{sum(s['duration'] for s in flute['segments'] if s['split'] == split):.1f}"]
        for split in ("train", "valid", "test")]

    listed = run_cli("corpus", "list", "--json").json()
    assert [c["name"] for c in listed] == ["flute", "violin"]
    for entry, m in zip(listed, (flute, manifest)):
        assert entry["kind"] == "builtin" and entry["instrument"] == m["instrument"]
        assert entry["segments"] == m["segment_counts"] and entry["durations"] == m["durations"]
    rows = table_rows(run_cli("corpus", "list").stdout)
    assert rows == [[c["name"], "builtin", c["instrument"],
                     *(f"{c['durations'][split]:.1f}" for split in ("train", "valid", "test")),
                     str(sum(c["segments"].values()))] for c in listed]


def test_ports_on_this_machine(run_cli):
    from dx7tools import midi

    try:
        names, problem = midi.output_port_names(), None
    except DX7Error as exc:
        names, problem = None, str(exc)
    for args in (("ports",), ("ports", "--json")):
        r = run_cli(*args, use_home=False)
        assert "Traceback" not in r.stderr, r.stderr
        if problem is not None:  # no MIDI system: one error line, exit 1 (cli.app's contract for bad input)
            assert error_line(r) == f"error: {problem}" and r.stdout == ""
        elif args[-1] == "--json":
            assert r.returncode == 0 and r.json() == names
        else:
            assert r.returncode == 0 and r.stdout.splitlines() == (names or ["no MIDI output ports"])


def test_ports_without_a_midi_system_through_the_console_entry_point(monkeypatch, capsys):
    """What `dx7tools ports` does where rtmidi cannot open the ALSA sequencer, on any machine."""
    import importlib.metadata
    import sys

    import mido
    import rtmidi

    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "dx7tools"]
    main = entry.load()

    def no_sequencer():
        raise rtmidi.SystemError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "get_output_names", no_sequencer)
    monkeypatch.setattr(sys, "argv", ["dx7tools", "ports"])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 1 and captured.out == ""
    assert captured.err.splitlines() == ["error: no MIDI system available (MidiInAlsa::initialize: error creating "
                                         "ALSA sequencer client object.)"]


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


# ---------------------------------------------------------------------------------------------
# structure of the cli package: command modules import cli.common and library code, never cli.app
# ---------------------------------------------------------------------------------------------

CLI_DIR = PATCHES.parent / "cli"
CLI_MODULES = sorted(p.stem for p in CLI_DIR.glob("*.py") if p.stem not in ("__init__", "__main__"))
HELP_ORDER = ["import", "list", "show", "bank", "preview", "fit", "resynth", "runs", "sweep", "export", "ports",
              "send", "render", "play", "eval", "paper-table", "report", "rank", "corpus"]


def _fresh_import(*modules: str) -> dict:
    """Import ``dx7tools_cli.<module>`` in order in a new interpreter; the cli modules loaded and the app's
    command names if ``app`` got loaded."""
    import json
    import subprocess
    import sys

    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}:\n"
        "    importlib.import_module('dx7tools_cli.' + m)\n"
        "loaded = sorted(k.split('.', 1)[1] for k in sys.modules if k.startswith('dx7tools_cli.'))\n"
        "app = sys.modules.get('dx7tools_cli.app')\n"
        "names = None if app is None else [c.name for c in app.app.registered_commands] + "
        "[g.name for g in app.app.registered_groups]\n"
        "print(json.dumps({'loaded': loaded, 'commands': names}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(CLI_DIR.parent))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_modules_import_alone_and_never_cli_app():
    assert {"app", "common"} <= set(CLI_MODULES) and len(CLI_MODULES) >= 8
    for module in CLI_MODULES:
        loaded = set(_fresh_import(module)["loaded"])
        if module == "common":
            assert loaded == {"common"}, f"cli.common imports {loaded - {'common'}}"
        elif module != "app":
            assert loaded <= {"common", module}, f"cli.{module} imports {loaded - {'common', module}}"


def test_cli_command_modules_have_no_app_import_even_lazily():
    import ast

    for module in CLI_MODULES:
        if module in ("app",):
            continue
        tree = ast.parse((CLI_DIR / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                names = {a.name for a in node.names}
                assert target not in (".app", "cli.app", "dx7tools_cli.app") and not (
                    target == "." and "app" in names), f"cli/{module}.py: from {target} import {names}"
                if module == "common":
                    assert not (node.level and (target.endswith("_cmds") or names & {m for m in CLI_MODULES})), \
                        f"cli/common.py imports a command module: from {target} import {names}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name not in ("cli.app", "dx7tools_cli.app"), f"cli/{module}.py: import {alias.name}"


def test_cli_app_registers_every_command_in_help_order_whatever_imports_first():
    commands = [m for m in CLI_MODULES if m.endswith("_cmds")]
    for order in (["export_cmds", "app"], [*commands, "app"], [*reversed(commands), "app"], ["app"]):
        result = _fresh_import(*order)
        assert result["commands"] == HELP_ORDER, order
        assert set(result["loaded"]) == set(CLI_MODULES), order


def test_cli_defaults_that_restate_torch_side_constants_match_them():
    # These cli options keep a literal default so `dx7tools --help` never imports ddx7 (torch).
    import typer.main

    from ddx7.data.corpus import DEFAULT_MINUTES
    from ddx7.export.performance import WIRE_BUDGET
    from ddx7.rank.ranking import DEFAULT_BUDGET, DEFAULT_CANDIDATES
    from dx7tools_cli.app import app

    def default(path: str, option: str):
        cmd = typer.main.get_command(app)
        for name in path.split():
            cmd = cmd.commands[name]
        return next(p.default for p in cmd.params if option in p.opts)

    pairs = [(("export", "--budget"), WIRE_BUDGET), (("rank", "--budget"), DEFAULT_BUDGET),
             (("rank", "--candidates"), DEFAULT_CANDIDATES), (("corpus build", "--minutes"), DEFAULT_MINUTES)]
    for (path, option), constant in pairs:
        assert default(path, option) == constant, (path, option)


def test_every_package_folder_is_installed():
    """pyproject lists packages explicitly: a new subpackage left out would be missing from a
    (non-editable) install."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    for top in ("dx7tools", "ddx7"):
        for init in (root / top).rglob("__init__.py"):
            package = ".".join(init.parent.relative_to(root).parts)
            assert package in listed, f"{package} is not in pyproject's [tool.setuptools] packages"
