"""The CLI and the operator's configuration under careless and hostile invocations: store
locations, credentials in URLs, numbers out of range, key variables left unset, no store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowreg.cli.main import main
from flowreg.controller.config import ConfigError, load_config, parse_config, store_lines
from flowreg.controller.run import RedactSecrets
from flowreg.controller.status import Outcome
from flowreg.location import LocationKind, parse_location, redact
from tests.support.builders import EXAMPLE
from tests.support.embedding_server import EmbeddingServer

ACCEPTED = "an http:// or https:// Qdrant URL"


def flowreg(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowreg.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


# --- store locations ------------------------------------------------------------------------

@pytest.mark.parametrize("location", [
    "ftp://host/x", "s3://bucket/flows", "file:///tmp/x", "ftp:/x", "qdrant://h:6333",
    "localhost:6333", "qdrant.svc:6334/x", "http:/host:6333", "http:///x", "https://",
    "http://host:99999", "http://host:6333?x=1"])
def test_a_location_that_looks_like_a_url_but_names_no_store_is_refused(tmp_path, location):
    result = flowreg("apply", "-f", str(EXAMPLE), "--store", location, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "argument --store" in result.stderr and ACCEPTED in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be created for a refused location"


@pytest.mark.parametrize("location", [
    "http://admin:s3cret-pw@127.0.0.1:6333", "https://:s3cret-pw@qdrant.example:6333/",
    "http://s3cret-pw@127.0.0.1:6333"])
def test_credentials_in_a_store_url_are_refused_and_never_shown(tmp_path, location):
    result = flowreg("export", "--agent", "a", "--store", location, cwd=tmp_path)
    assert result.returncode == 2
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "$QDRANT_API_KEY" in result.stderr


def test_credentials_in_an_operator_store_url_name_the_setting_and_not_the_password():
    with pytest.raises(ConfigError) as caught:
        parse_config({"stores": {"main": {"location": "http://u:s3cret-pw@q:6333"}}})
    assert "stores.main.location" in str(caught.value) and "s3cret-pw" not in str(caught.value)


@pytest.mark.parametrize(("text", "kind", "value"), [
    (":memory:", LocationKind.MEMORY, ":memory:"),
    ("http://q:6333/", LocationKind.SERVER, "http://q:6333"),
    ("HTTPS://q.example", LocationKind.SERVER, "HTTPS://q.example"),
    (".flowreg/qdrant", LocationKind.DIRECTORY, ".flowreg/qdrant"),
    ("./localhost:6333", LocationKind.DIRECTORY, "./localhost:6333"),
    ("/var/lib/flowreg/qdrant", LocationKind.DIRECTORY, "/var/lib/flowreg/qdrant"),
])
def test_locations_parse_once_into_their_kind(text, kind, value):
    where = parse_location(text)
    assert (where.kind, where.value) == (kind, value)


def test_redact_strips_userinfo_from_messages_logs_and_status():
    text = "Qdrant at http://admin:pw1234@h:6333 and grpc://k@h2/x failed; user@host stays"
    assert redact(text) == "Qdrant at http://h:6333 and grpc://h2/x failed; user@host stays"
    outcome = Outcome(False, "StoreUnavailable", "at https://u:pw1234@q:6333: refused")
    assert "pw1234" not in outcome.message and "https://q:6333" in outcome.message
    record = logging.LogRecord("kopf", logging.ERROR, __file__, 1,
                               "connecting to %s", ("http://u:pw1234@q:6333",), None)
    RedactSecrets([]).filter(record)
    assert record.getMessage() == "connecting to http://q:6333"


# --- numbers --------------------------------------------------------------------------------

NUMERIC_FLAGS = [
    ("apply", "--batch-size", "0"), ("apply", "--batch-size", "-1"),
    ("apply", "--batch-size", "1e9"), ("apply", "--batch-size", "two"),
    ("apply", "--max-deletions", "-5"), ("plan", "--max-deletions", "1.5"),
    ("apply", "--embedding-dimension", "0"), ("apply", "--embedding-dimension", "70000"),
    ("apply", "--lock-timeout", "-1"), ("apply", "--lock-timeout", "nan"),
    ("query", "-k", "0"), ("query", "--limit", "100000"), ("history", "--limit", "0"),
    ("run", "--peering-lifetime", "0"), ("run", "--metrics-port", "65536"),
    ("run", "--metrics-port", "-1"),
]


@pytest.mark.parametrize(("command", "flag", "value"), NUMERIC_FLAGS)
def test_a_numeric_flag_out_of_range_is_a_usage_error_naming_the_flag(capsys, command, flag,
                                                                      value):
    args = {"apply": ["-f", str(EXAMPLE)], "plan": ["-f", str(EXAMPLE)],
            "query": ["hello", "--agent", "a"], "history": [], "run": ["-A"]}[command]
    with pytest.raises(SystemExit) as caught:
        main([command, *args, f"{flag}={value}"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err or f"argument -k/{flag}" in err or "argument -k" in err
    assert "must be" in err and "from" in err


@pytest.mark.parametrize(("settings", "named"), [
    ({"stores": {"s": {"batchSize": 0}}}, "stores.s.batchSize"),
    ({"stores": {"s": {"batchSize": "many"}}}, "stores.s.batchSize"),
    ({"stores": {"s": {"pageSize": -3}}}, "stores.s.pageSize"),
    ({"stores": {"s": {"timeout": 0}}}, "stores.s.timeout"),
    ({"stores": {"s": {"location": "http://q:6333", "grpcPort": 0}}}, "stores.s.grpcPort"),
    ({"stores": {"s": {"location": "http://q:6333", "grpcPort": 70_000}}}, "stores.s.grpcPort"),
    ({"stores": {"s": {"embedder": {"kind": "hashing", "dimension": 0}}}},
     "stores.s.embedder.dimension"),
    ({"stores": {"s": {"embedder": {"kind": "openai", "url": "u", "model": "m",
                                    "concurrency": 0}}}}, "stores.s.embedder.concurrency"),
    ({"stores": {"s": {"embedder": {"kind": "openai", "url": "u", "model": "m",
                                    "maxRetries": -1}}}}, "stores.s.embedder.maxRetries"),
    ({"driftCheckSeconds": 0}, "driftCheckSeconds"),
    ({"driftCheckSeconds": float("inf")}, "driftCheckSeconds"),
    ({"maxStatusNames": -1}, "maxStatusNames"),
    ({"progressEverySeconds": -2}, "progressEverySeconds"),
])
def test_an_operator_setting_out_of_range_is_a_config_error_naming_it(settings, named):
    with pytest.raises(ConfigError) as caught:
        parse_config(settings)
    assert str(caught.value).startswith(named)


def test_the_same_bounds_accept_the_same_values_in_both_shells(capsys):
    config = parse_config({"stores": {"s": {"batchSize": 10_000, "pageSize": 1}},
                           "maxStatusNames": 0})
    assert config.stores["s"].batch_size == 10_000 and config.max_status_names == 0
    with pytest.raises(SystemExit):
        main(["apply", "-f", str(EXAMPLE), "--batch-size", "10001"])
    assert "from 1 to 10000" in capsys.readouterr().err


# --- key variables --------------------------------------------------------------------------

def apply_through(server: EmbeddingServer, store: Path, *flags: str,
                  unset: str) -> subprocess.CompletedProcess[str]:
    """``flowreg apply`` of the example through ``server``, with ``$unset`` not set."""
    env = {k: v for k, v in os.environ.items() if k != unset}
    return subprocess.run(
        [sys.executable, "-m", "flowreg.cli.main", "apply", "-f", str(EXAMPLE),
         "--store", str(store), "--embedder", "openai",
         "--embedding-url", server.base_url, "--embedding-model", "m", *flags],
        capture_output=True, text=True, timeout=120, env=env)


def test_an_unset_key_variable_is_named_before_any_call(tmp_path):
    with EmbeddingServer(dimension=8) as server:
        result = apply_through(server, tmp_path / "qdrant",
                               "--embedding-api-key-env", "FLOWREG_TEST_UNSET_KEY",
                               unset="FLOWREG_TEST_UNSET_KEY")
        assert server.requests == 0
    assert result.returncode == 2
    assert "$FLOWREG_TEST_UNSET_KEY is not set" in result.stderr
    assert not (tmp_path / "qdrant").exists()


def test_the_default_key_variable_unset_is_named_and_a_keyless_endpoint_still_works(tmp_path):
    with EmbeddingServer(dimension=8) as server:
        result = apply_through(server, tmp_path / "qdrant", unset="OPENAI_API_KEY")
    assert result.returncode == 0, result.stderr
    assert "warning: $OPENAI_API_KEY is not set" in result.stderr


def operator_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_operator_names_an_unset_key_variable_before_it_starts(tmp_path):
    config = operator_config(tmp_path, {"stores": {"default": {
        "location": "http://127.0.0.1:1", "apiKeyEnv": "FLOWREG_TEST_UNSET_KEY"}}})
    env = {k: v for k, v in os.environ.items() if k != "FLOWREG_TEST_UNSET_KEY"}
    result = subprocess.run([sys.executable, "-m", "flowreg.cli.main", "run", "-A", "--config",
                             str(config), "--metrics-port", "0", "--liveness", ""],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "stores.default.apiKeyEnv: $FLOWREG_TEST_UNSET_KEY is not set" in result.stderr


# --- the operator's store -------------------------------------------------------------------

def test_the_operator_refuses_to_start_without_a_configured_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLOWREG_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "flowreg.cli.main", "run", "-A",
                             "--metrics-port", "0", "--liveness", ""],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "no default store" in result.stderr and "stores.default.location" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_configured_store_without_a_location_is_refused(tmp_path):
    config = operator_config(tmp_path, {"stores": {"default": {"collection": "c"}}})
    with pytest.raises(ConfigError, match=r"stores\.default\.location is not set"):
        load_config(config)


def test_the_operator_says_plainly_which_store_it_uses(tmp_path):
    config = load_config(operator_config(tmp_path, {"stores": {
        "disk": {"location": str(tmp_path / "qdrant")},
        "server": {"location": "http://qdrant.qdrant.svc:6333"},
        "scratch": {"location": ":memory:"}}}))
    lines = {line.split("'")[1]: line for line in store_lines(config)}
    assert lines["disk"].startswith(f"store 'disk': embedded directory {tmp_path / 'qdrant'}")
    assert lines["server"].startswith("store 'server': Qdrant server http://qdrant.qdrant.svc")
    assert "every flow is lost when the operator stops" in lines["scratch"]


def test_the_charts_values_schema_refuses_what_the_operator_refuses():
    import copy

    import jsonschema_rs

    chart = Path(__file__).resolve().parents[2] / "helm" / "flowreg"
    validator = jsonschema_rs.validator_for(json.loads((chart / "values.schema.json").read_text()))
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert validator.is_valid(values)
    for setting, value in [("location", "http://admin:pw@qdrant:6333"), ("batchSize", 0),
                           ("pageSize", 0), ("timeout", 0)]:
        bad = copy.deepcopy(values)
        bad["stores"]["default"][setting] = value
        assert not validator.is_valid(bad), setting
        with pytest.raises(ConfigError):
            parse_config({"stores": {"default": bad["stores"]["default"]}})
    without = copy.deepcopy(values)
    del without["stores"]["default"]["location"]
    assert not validator.is_valid(without)


@pytest.mark.parametrize("location", ["ftp://h/x", "http://u:pw1234@h:6333", "h:6333"])
def test_the_python_api_refuses_the_same_locations(tmp_path, location):
    from flowreg.errors import InvalidSpec
    from flowreg.store import open_store

    with pytest.raises(InvalidSpec) as caught:
        open_store(location)
    assert "pw1234" not in str(caught.value)
