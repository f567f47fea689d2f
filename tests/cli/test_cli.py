"""The flowreg CLI as a user runs it: commands, outputs, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowreg.cli.main import main
from tests.support.builders import EXAMPLE, REPO, make_flows, registry_doc
from tests.support.imports import HEAVY, imported_by


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowreg.cli.main", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "qdrant")


def apply_json(capsys, *args: str) -> dict:
    assert main(["apply", *args, "-o", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_apply_then_reapply_is_all_skip(capsys, store):
    first = apply_json(capsys, "-f", str(EXAMPLE), "--store", store)
    assert len(first["created"]) == 6 and first["embedded_texts"] == 6
    second = apply_json(capsys, "-f", str(EXAMPLE), "--store", store)
    assert second["created"] == [] and len(second["skipped"]) == 6
    assert second["store_writes"] == 0 and second["embedding_calls"] == 0


def test_text_report_reads_like_the_seed(capsys, store, write_manifest):
    path = write_manifest(registry_doc(make_flows(3)))
    assert main(["apply", "-f", str(path), "--store", store]) == 0
    out = capsys.readouterr().out
    assert "3 change(s), 0 unchanged (CREATE flow_00000, CREATE flow_00001" in out


def test_plan_writes_nothing(capsys, store):
    assert main(["plan", "-f", str(EXAMPLE), "--store", store, "-o", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["dry_run"] is True and len(planned["created"]) == 6
    assert main(["plan", "-f", str(EXAMPLE), "--store", store]) == 0
    assert "CREATE check_balance (embed)" in capsys.readouterr().out
    assert main(["export", "--agent", "finance_bot_v1", "--store", store, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["flows"] == []


def test_export_round_trips_through_apply(capsys, store, tmp_path):
    apply_json(capsys, "-f", str(EXAMPLE), "--store", store)
    assert main(["export", "--agent", "finance_bot_v1", "--store", store,
                 "--name", "finance-bot"]) == 0
    exported = tmp_path / "back.yaml"
    exported.write_text(capsys.readouterr().out)
    assert main(["validate", "-f", str(exported)]) == 0
    capsys.readouterr()
    again = apply_json(capsys, "-f", str(exported), "--store", store)
    assert len(again["skipped"]) == 6 and again["changes"] == 0


def test_invalid_input_exits_3_and_writes_nothing(capsys, store, write_manifest):
    flows = make_flows(2)
    flows[1]["checksum"] = "sha256:" + "f" * 64
    path = write_manifest(registry_doc(flows))
    assert main(["apply", "-f", str(path), "--store", store]) == 3
    err = capsys.readouterr().err
    assert "nothing was written" in err and 'flow "flow_00001"' in err
    assert not Path(store).exists() or main(
        ["export", "--agent", "agent_1", "--store", store, "-o", "json"]) == 0
    assert "flow_" not in capsys.readouterr().out


def test_deletion_guard_exits_5(capsys, store, write_manifest):
    assert main(["apply", "-f", str(write_manifest(registry_doc(make_flows(30)))),
                 "--store", store]) == 0
    fewer = write_manifest(registry_doc(make_flows(2)))
    assert main(["apply", "-f", str(fewer), "--store", store]) == 5
    assert "more than the limit of 25" in capsys.readouterr().err
    assert main(["apply", "-f", str(fewer), "--store", store, "--max-deletions", "28"]) == 0


def test_empty_registry_never_silently_deletes_everything(capsys, store, write_manifest):
    apply_json(capsys, "-f", str(write_manifest(registry_doc(make_flows(3)))), "--store", store)
    empty = write_manifest(registry_doc([]))
    assert main(["apply", "-f", str(empty), "--store", store]) == 5
    assert "declares no flows" in capsys.readouterr().err
    done = apply_json(capsys, "-f", str(empty), "--store", store, "--allow-empty")
    assert len(done["deleted"]) == 3


def test_conflict_exits_6_and_leaves_the_other_registry_alone(capsys, store, write_manifest):
    apply_json(capsys, "-f", str(write_manifest(registry_doc(make_flows(2), name="first"))),
               "--store", store)
    second = write_manifest(registry_doc(make_flows(3), name="second"))
    assert main(["apply", "-f", str(second), "--store", store, "-o", "json"]) == 6
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["created"] == ["flow_00002"]
    assert {c["flow"] for c in report["conflicts"]} == {"flow_00000", "flow_00001"}
    assert "owned by default/first" in captured.err


def test_checksum_write_then_validate(write_manifest, capsys):
    path = write_manifest(registry_doc(make_flows(2)))
    assert main(["checksum", "-f", str(path), "--write"]) == 0
    assert "2 checksum(s) written" in capsys.readouterr().out
    assert path.read_text().count("checksum: sha256:") == 2
    assert main(["checksum", "-f", str(path)]) == 0
    path.write_text(path.read_text().replace("request kind 1", "request kind one"))
    assert main(["validate", "-f", str(path)]) == 3
    assert main(["checksum", "-f", str(path)]) == 3


def test_history_lists_runs(capsys, store):
    apply_json(capsys, "-f", str(EXAMPLE), "--store", store)
    assert main(["history", "--store", store, "-o", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert runs[0]["status"] == "succeeded" and runs[0]["done"] == 6


def test_unreachable_server_exits_4_and_records_a_failed_run(tmp_path):
    history = tmp_path / "h.db"
    result = run("apply", "-f", str(EXAMPLE), "--store", "http://127.0.0.1:9",
                 "--history", str(history))
    assert result.returncode == 4, result.stderr
    assert "StoreUnavailable" in result.stderr and "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    listed = run("history", "--store", "http://127.0.0.1:9", "--history", str(history),
                 "-o", "json")
    [failed] = json.loads(listed.stdout)["runs"]
    assert failed["status"] == "failed" and "unavailable" in failed["error"]


def test_api_key_never_on_the_command_line():
    result = run("apply", "--help")
    assert "--api-key" not in result.stdout and "QDRANT_API_KEY" in result.stdout


def test_usage_error_exits_2():
    assert run("apply").returncode == 2


@pytest.mark.parametrize("argv", [("--help",), ("apply", "--help"),
                                  ("validate", "-f", str(EXAMPLE)),
                                  ("checksum", "-f", str(EXAMPLE))])
def test_help_and_offline_commands_load_no_store_client_or_kubernetes(argv):
    loaded = imported_by(*argv)
    assert "flowreg" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_apply_on_a_directory_loads_qdrant_edge_and_not_the_server_client(tmp_path):
    loaded = imported_by("apply", "-f", str(EXAMPLE), "--store", str(tmp_path / "q"))
    assert "qdrant_edge" in loaded and "qdrant_client" not in loaded


def test_cli_defaults_are_the_engines():
    from flowreg import store, sync
    from flowreg.cli import main as cli

    assert (cli.DEFAULT_LOCATION, cli.DEFAULT_COLLECTION, cli.DEFAULT_BATCH_SIZE) == (
        store.DEFAULT_LOCATION, store.DEFAULT_COLLECTION, sync.DEFAULT_BATCH_SIZE)


def test_input_without_a_flowregistry_exits_3_and_says_so(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    for command in ("validate", "plan", "apply"):
        result = run(command, "-f", str(empty), *(() if command == "validate" else
                                                  ("--store", str(tmp_path / "q"))))
        assert result.returncode == 3, result.stderr
        assert f"{empty}: no FlowRegistry document found (empty input)" in result.stderr
    assert not (tmp_path / "q").exists()


def test_manifest_from_standard_input():
    result = subprocess.run([sys.executable, "-m", "flowreg.cli.main", "validate", "-f", "-"],
                            input=EXAMPLE.read_text(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "-: FlowRegistry default/finance-bot" in result.stdout


def test_version_is_the_packages():
    import tomllib

    from flowreg import __version__

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert __version__ == declared["project"]["version"]
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"flowreg {__version__}"


def test_readme_exit_code_table_is_the_codes_table():
    from flowreg.errors import EXIT_CODE_MEANINGS

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes", 1)[1].split("###", 1)[0]
    rows = [line.strip("| ").split(" | ", 1) for line in section.splitlines()
            if line.startswith("| ") and line[2:3].isdigit()]
    assert {int(code): meaning.rstrip(" |") for code, meaning in rows} == {
        int(code): meaning for code, meaning in EXIT_CODE_MEANINGS.items()}
