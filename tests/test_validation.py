"""Input validation shared by every surface, the catalog lookup, and `--` command joining."""

from __future__ import annotations

import math
import shlex
import subprocess

import pytest

from pyro_mcp import validation
from pyro_mcp.cli.runners import remainder_command
from pyro_mcp.environments.catalog import CATALOG, get_spec
from pyro_mcp.errors import ValidationError
from pyro_mcp.manager import join_command

RANGES = [
    (validation.vcpu_count, "vcpu_count", 1, 8),
    (validation.mem_mib, "mem_mib", 256, 32768),
    (validation.ttl_seconds, "ttl_seconds", 60, 3600),
]


@pytest.mark.parametrize(("check", "name", "low", "high"), RANGES)
def test_bounds_are_inclusive(check, name, low, high) -> None:
    assert check(low) == low
    assert check(high) == high
    assert check((low + high) // 2) == (low + high) // 2


@pytest.mark.parametrize(("check", "name", "low", "high"), RANGES)
def test_out_of_range_names_the_field_the_range_and_the_value(check, name, low, high) -> None:
    for bad in (low - 1, high + 1, 0, -1):
        with pytest.raises(ValueError) as info:
            check(bad)
        assert str(info.value) == f"{name} must be between {low} and {high} (got {bad})"


@pytest.mark.parametrize(("check", "name", "low", "high"), RANGES)
@pytest.mark.parametrize("bad", [True, False, "2", 2.0, None, [1]])
def test_only_real_integers_are_accepted(check, name, low, high, bad) -> None:
    # bool is a subclass of int in Python; True must not sneak through as 1.
    with pytest.raises(ValidationError, match=f"^{name} must be an integer between {low}"):
        check(bad)


def test_validation_errors_are_value_errors() -> None:
    # The contract: validation problems raise ValueError on every surface.
    assert issubclass(ValidationError, ValueError)


@pytest.mark.parametrize("good", [0.001, 0.5, 1, 30, 86400])
def test_timeout_accepts_positive_numbers_as_float(good) -> None:
    value = validation.timeout_seconds(good)
    assert value == good
    assert isinstance(value, float)


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_timeout_must_be_finite_and_greater_than_zero(bad) -> None:
    with pytest.raises(ValidationError, match=r"^timeout_seconds must be greater than 0"):
        validation.timeout_seconds(bad)


@pytest.mark.parametrize("bad", [True, False, "30", None])
def test_timeout_must_be_a_number(bad) -> None:
    with pytest.raises(ValidationError, match=r"^timeout_seconds must be a number greater than 0$"):
        validation.timeout_seconds(bad)


def test_timeout_has_an_upper_bound() -> None:
    with pytest.raises(ValidationError, match="at most 86400"):
        validation.timeout_seconds(86401)


@pytest.mark.parametrize("bad", ["", "   ", "\n", None, 5, "echo \0 hi"])
def test_command_must_be_a_non_empty_string_without_nul(bad) -> None:
    with pytest.raises(ValidationError, match=r"^command must"):
        validation.command(bad)


def test_command_is_returned_unchanged() -> None:
    assert validation.command("  echo 'a  b'  ") == "  echo 'a  b'  "


@pytest.mark.parametrize("bad", ["abc", "ABCDEF123456", "0123456789ab0", "../../etc/pa", 12])
def test_identifier_rejects_anything_but_12_lowercase_hex(bad) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        validation.identifier("vm", bad)
    assert validation.identifier("vm", "0123456789ab") == "0123456789ab"


# -- catalog -------------------------------------------------------------------------------


def test_catalog_has_the_three_contract_environments() -> None:
    assert sorted(CATALOG) == ["debian:12", "debian:12-base", "debian:12-build"]
    for spec in CATALOG.values():
        assert spec.version == "1.0.0"
        assert "python3" in spec.packages  # the guest agent needs it
        assert spec.dir_name == spec.name.replace(":", "_") + "-1.0.0"


def test_unknown_environment_lists_the_known_names() -> None:
    with pytest.raises(ValueError) as info:
        get_spec("nosuch:1")
    message = str(info.value)
    assert "nosuch:1" in message
    for name in ("debian:12", "debian:12-base", "debian:12-build"):
        assert name in message


def test_environment_names_are_exact() -> None:
    assert get_spec("debian:12").name == "debian:12"
    for near_miss in ("Debian:12", "debian:12 ", "debian", "debian_12"):
        with pytest.raises(ValueError):
            get_spec(near_miss)


# -- the command after `--` ------------------------------------------------------------------


@pytest.mark.parametrize("words", [None, [], ["--"]])
def test_missing_command_after_double_dash(words) -> None:
    with pytest.raises(ValidationError, match=r"^command is required after `--`$"):
        remainder_command(words)


@pytest.mark.parametrize(
    "argv",
    [
        ["echo", "hi"],
        ["sh", "-c", "echo $HOME; exit 7"],
        ["printf", "%s\n", "a b", "it's", 'say "x"', ""],
        ["echo", "*", "?", "~", "$(id)", "`id`", "a;b", "a|b", "a&&b", ">x"],
        ["echo", "--", "-n"],
    ],
)
def test_argv_is_joined_with_posix_quoting(argv) -> None:
    joined = remainder_command(argv)
    assert joined == join_command(argv) == shlex.join(argv)
    # A real POSIX shell (the guest runs /bin/sh) splits it back into exactly these words:
    # nothing is expanded or run.
    words = subprocess.run(
        ["/bin/sh", "-c", f"printf '%s\\0' {joined}"], capture_output=True, check=True
    ).stdout
    assert words.split(b"\0")[:-1] == [w.encode() for w in argv]


def test_leading_double_dash_is_stripped_once() -> None:
    assert remainder_command(["--", "echo", "--"]) == "echo --"


def test_one_argument_with_white_space_is_a_whole_shell_command() -> None:
    # `pyro run debian:12 -- "echo a | wc -c"`: quoting it into one word could only ever
    # give "command not found", so it is passed through as the shell command.
    assert remainder_command(["echo a | wc -c"]) == "echo a | wc -c"
    assert remainder_command(["echo", "a | wc -c"]) == "echo 'a | wc -c'"
    assert remainder_command(["a|b"]) == "'a|b'"


def test_simple_words_stay_readable() -> None:
    assert remainder_command(["git", "--version"]) == "git --version"
    assert remainder_command(["sh", "-c", "exit 7"]) == "sh -c 'exit 7'"


@pytest.mark.parametrize("bad", ["false", "true", 0, 1, None, []])
@pytest.mark.parametrize("name", ["network", "allow_host_compat"])
def test_isolation_switches_take_only_booleans(tmp_path, name: str, bad: object) -> None:
    """An SDK caller (or a model, via `demo ollama`) sending "false" must not get true."""
    from pyro_mcp import Pyro

    with Pyro(base_dir=tmp_path / "home") as pyro:
        with pytest.raises(ValueError, match=f"^{name} must be true or false"):
            pyro.run_in_vm(environment="debian:12", command="true", **{name: bad})
        if name == "allow_host_compat":
            with pytest.raises(ValueError, match=f"^{name} must be true or false"):
                pyro.create_workspace(environment="debian:12", **{name: bad})
    assert validation.boolean(name, True) is True and validation.boolean(name, False) is False
