"""Input validation shared by every surface, the catalog lookup, and `--` command joining."""

from __future__ import annotations

import base64
import math
import shlex
import subprocess

import pytest

from pyro_mcp import Pyro, hostpaths, validation
from pyro_mcp.cli.runners import remainder_command
from pyro_mcp.environments.catalog import CATALOG, get_spec
from pyro_mcp.errors import ValidationError
from pyro_mcp.manager import join_command
from pyro_mcp.operations.checks import check_value
from pyro_mcp.operations.registry import read_operation
from pyro_mcp.workspaces.content import file_content


def _declared(operation: str, name: str):
    """The check a parameter's Param declares (the one home of its range), as SDK and MCP
    calls apply it."""
    param = next(p for p in read_operation(getattr(Pyro, operation)).params if p.name == name)

    def check(value):
        check_value(param, value, name)
        return value

    return check


RANGES = [
    (_declared("create_vm", "vcpu_count"), "vcpu_count", 1, 8),
    (_declared("create_vm", "mem_mib"), "mem_mib", 256, 32768),
    (_declared("create_vm", "ttl_seconds"), "ttl_seconds", 60, 86400),
    (_declared("create_workspace", "disk_mib"), "disk_mib", 64, 1048576),
]
timeout_seconds = _declared("exec_workspace", "timeout_seconds")


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
        message = str(info.value)
        assert message.startswith(f"{name} must be between {low} and {high} (got {bad})")
        if name == "ttl_seconds" and bad > high:  # the operator's ceiling names itself
            assert message.endswith(": 86400 is the operator's ceiling (PYRO_MAX_TTL_SECONDS)")
        else:
            assert message == f"{name} must be between {low} and {high} (got {bad})"


def test_the_lifetime_ceiling_is_the_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYRO_MAX_TTL_SECONDS", "7200")
    assert validation.within_ceiling("ttl_seconds", 7200, 60) == 7200
    assert validation.within_ceiling("ttl_seconds", 5, 1) == 5  # an extension may be short
    assert validation.idle_stop_seconds(0) == 0
    with pytest.raises(ValidationError) as info:
        validation.within_ceiling("ttl_seconds", 7201, 1)
    assert str(info.value) == (
        "ttl_seconds must be between 1 and 7200 (got 7201): 7200 is the operator's ceiling "
        "(PYRO_MAX_TTL_SECONDS)"
    )
    with pytest.raises(ValidationError, match=r"^idle_stop_seconds must be between 0 and 7200"):
        validation.idle_stop_seconds(7201)
    for raw in ("soon", "+7200", "7_200", "\u0667\u0662\u0660\u0660", "59", "9" * 5000):
        monkeypatch.setenv("PYRO_MAX_TTL_SECONDS", raw)  # int() takes all but the first
        with pytest.raises(ValidationError) as info:
            validation.within_ceiling("ttl_seconds", 600, 60)
        assert str(info.value) == (
            f"PYRO_MAX_TTL_SECONDS must be a whole number of seconds of at least 60 (got {raw!r})"
        )


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
def test_timeout_accepts_positive_numbers(good) -> None:
    assert timeout_seconds(good) == good


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.nan, -math.inf])
def test_timeout_must_be_finite_and_greater_than_zero(bad) -> None:
    with pytest.raises(ValidationError, match=r"^timeout_seconds must be greater than 0"):
        timeout_seconds(bad)


def test_timeout_must_be_finite() -> None:
    with pytest.raises(ValidationError, match=r"^timeout_seconds must be a finite number"):
        timeout_seconds(math.inf)


@pytest.mark.parametrize("bad", [True, False, "30", None])
def test_timeout_must_be_a_number(bad) -> None:
    with pytest.raises(ValidationError, match=r"^timeout_seconds must be a number greater than 0$"):
        timeout_seconds(bad)


def test_timeout_has_an_upper_bound() -> None:
    with pytest.raises(ValidationError, match="at most 86400"):
        timeout_seconds(86401)


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


# -- text that can reach the sandbox (issue 10, item 12) and what a file read returns (item 13) --


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "echo \ud800",
            r"command is not valid UTF-8 text \(lone surrogate '\\ud800' at character 5\)",
        ),
        ("x" * 131_072, "command is 131072 bytes long; the limit is 131071 bytes"),
        ("€" * 43_691, "command is 131073 bytes long"),  # the limit is in bytes, not characters
    ],
)
def test_command_limits_are_named(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validation.command(value)


def test_command_at_the_limit_is_accepted() -> None:
    assert validation.command("x" * 131_071) == "x" * 131_071


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/tmp/a\0b", "output_path must not contain NUL characters"),
        ("/tmp/\udcff", "output_path is not valid UTF-8 text"),
        ("/" + "a" * 4096, "output_path is 4097 bytes long; the limit is 4096 bytes"),
        ("  ", "output_path must be a host path"),
        (7, "output_path must be a host path"),
    ],
)
def test_host_paths_are_checked_before_the_os_sees_them(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        hostpaths.resolve(value, "output_path")


def test_text_may_allow_nul_as_content() -> None:
    assert validation.text("text", "a\0b", allow_nul=True) == "a\0b"


@pytest.mark.parametrize(
    ("data", "truncated", "kept"),
    [
        ("ab€".encode()[:3], True, b"ab"),  # cut inside €: the partial character is dropped
        ("ab€".encode()[:4], True, b"ab"),
        ("ab€".encode(), True, "ab€".encode()),
        ("ab😀".encode()[:5], True, b"ab"),  # four-byte characters too
        (b"ab\xe2\x82", False, b"ab\xe2\x82"),  # the whole file: its bytes are what they are
        (b"\xff\xfe\xe2", True, b"\xff\xfe\xe2"),  # binary: bytes kept as they are
    ],
)
def test_file_content_never_ends_in_a_cut_character(
    data: bytes, truncated: bool, kept: bytes
) -> None:
    out = file_content(data, truncated, "base64", lambda text: text)
    assert base64.b64decode(out["content"]) == kept
    assert out["returned_bytes"] == len(kept)


@pytest.mark.parametrize(
    ("data", "binary"),
    [(b"plain\n", False), ("ünï".encode(), False), (b"a\0b", True), (b"\xff", True), (b"", False)],
)
def test_binary_content_is_flagged(data: bytes, binary: bool) -> None:
    assert file_content(data, False, "utf-8", lambda text: text)["binary"] is binary


def test_base64_content_is_redacted_without_touching_other_bytes() -> None:
    out = file_content(b"\xffkey=SECRET\0", False, "base64", lambda t: t.replace("SECRET", "***"))
    assert base64.b64decode(out["content"]) == b"\xffkey=***\0"


def test_file_encoding_is_one_of_two() -> None:
    with pytest.raises(ValidationError, match="encoding must be one of utf-8, base64"):
        validation.file_encoding("latin-1")


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({"integer": True, "ge": 1, "le": 1000}, 0, "cols must be between 1 and 1000 (got 0)"),
        ({"integer": True, "ge": 1, "le": 1000}, 2.0, "cols must be an integer between 1 and 1000"),
        ({"integer": True, "ge": 0}, -1, "cols must be at least 0 (got -1)"),
        ({"integer": True, "ge": 0}, True, "cols must be an integer of at least 0"),
        ({"integer": False, "gt": 0, "le": 60}, 61, "cols must be at most 60 (got 61)"),
        ({"integer": False, "gt": 0, "le": 60}, math.nan, "cols must be greater than 0 (got nan)"),
        ({"integer": False, "gt": 0, "le": 60}, "1", "cols must be a number greater than 0"),
    ],
)
def test_declared_ranges_give_one_line_messages(kwargs, value, message) -> None:
    with pytest.raises(ValidationError) as info:
        validation.number_in_range("cols", value, **kwargs)
    assert str(info.value) == message


def test_declared_ranges_pass_good_values() -> None:
    assert validation.number_in_range("n", 5, integer=True, ge=1, le=10) == 5
    assert validation.number_in_range("n", 0.5, integer=False, gt=0, le=1) == 0.5
    assert validation.number_in_range("n", 10**9, integer=True, ge=0) == 10**9


def test_a_huge_number_is_refused_in_one_line() -> None:
    """An integer too long to print (over 4300 digits) or to make a float gets the range's
    message, not Python's conversion error."""
    huge = 10**5000
    for call, message in (
        (lambda: validation.int_in_range("x", huge, 1, 5), "x must be between 1 and 5"),
        (
            lambda: validation.within_ceiling("ttl_seconds", -huge, 60),
            "ttl_seconds must be between 60",
        ),
        (
            lambda: validation.number_in_range("t", huge, integer=False, gt=0, le=10),
            "t must be at most 10",
        ),
        (
            lambda: validation.number_in_range("t", -huge, integer=False, gt=0, le=10),
            "t must be greater than 0",
        ),
    ):
        with pytest.raises(ValidationError, match=message) as caught:
            call()
        assert len(str(caught.value)) < 200
