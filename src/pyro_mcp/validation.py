"""Input validation shared by every surface (the CLI, SDK and MCP all land here)."""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ValidationError

# The ranges' one home is their Param declarations (operations/params.py), built from these.
VCPU_RANGE = (1, 8)
MEM_RANGE = (256, 32768)
TTL_MIN = 60  # a create's lifetime, in seconds, at least
# The operator's ceiling on any lifetime, create and extension alike (and on idle stop).
MAX_TTL_SETTING = "PYRO_MAX_TTL_SECONDS"
MAX_TTL_DEFAULT = 86400
DISK_RANGE = (64, 1048576)  # MiB of /workspace: 64 MiB to 1 TiB (sparse)
MAX_TIMEOUT_SECONDS = 86400
# Linux's limit on one argument (MAX_ARG_STRLEN less the NUL): `/bin/sh -lc` takes the
# command as one argument, so a longer one cannot start on any engine.
MAX_COMMAND_BYTES = 128 * 1024 - 1
MAX_HOST_PATH_BYTES = 4096  # Linux PATH_MAX
MAX_TEXT_BYTES = 1024 * 1024  # a file's new text, a patch
ID_PATTERN = "^[0-9a-f]{12}$"  # VMs, workspaces, shells: new_id()
MAX_IDLE_MS = 10000  # a shell read's wait_for_idle_ms
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # snapshots, services, label keys
FILE_ENCODINGS = ("utf-8", "base64")  # how a file read returns content


def _got(value: Any) -> str:
    """A refused number as shown in a message (one too long to print is said so)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {len(hex(abs(value))) - 2} hex digits"
    return str(value)


def int_in_range(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer between {low} and {high}")
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high} (got {_got(value)})")
    return value


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def number_in_range(
    name: str,
    value: Any,
    *,
    integer: bool,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """A number within declared bounds (``Param(ge=, gt=, le=)``), with one-line messages."""
    if integer and ge is not None and le is not None and gt is None:
        return int_in_range(name, value, int(ge), int(le))
    kinds = (int,) if integer else (int, float)
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, kinds):
        low = f" greater than {_shown(gt)}" if gt is not None else ""
        low = f" of at least {_shown(ge)}" if ge is not None else low
        raise ValidationError(f"{name} must be {kind}{low}")
    if gt is not None and not value > gt:  # NaN and -inf too
        raise ValidationError(f"{name} must be greater than {_shown(gt)} (got {_got(value)})")
    if ge is not None and not value >= ge:
        raise ValidationError(f"{name} must be at least {_shown(ge)} (got {_got(value)})")
    if isinstance(value, float) and not math.isfinite(value):  # an int always is
        raise ValidationError(f"{name} must be a finite number (got {value})")
    if le is not None and value > le:
        raise ValidationError(f"{name} must be at most {_shown(le)} (got {_got(value)})")
    return value


def operator_setting(name: str, default: int, minimum: int, unit: str) -> int:
    """The one reader of an operator's whole-number setting (``PYRO_MAX_TTL_SECONDS``,
    ``PYRO_MIN_FREE_MIB``): from the environment when used, so a long-lived process follows
    its environment as started; ASCII digits only (``int`` would take "+5", "1_0", "٥"), at
    most 18 of them (past 4300, ``int`` itself refuses)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < minimum:
        least = f" of at least {minimum}" if minimum else ""
        raise ValidationError(f"{name} must be a whole number of {unit}{least} (got {raw!r})")
    return int(raw)


def max_ttl_seconds() -> int:
    """The operator's ceiling (``PYRO_MAX_TTL_SECONDS``, default 24 h)."""
    return operator_setting(MAX_TTL_SETTING, MAX_TTL_DEFAULT, TTL_MIN, "seconds")


def within_ceiling(name: str, value: Any, low: int) -> int:
    """The ceiling rule: ``low`` to the operator's ``PYRO_MAX_TTL_SECONDS``, and a value
    over it is refused naming that setting."""
    high = max_ttl_seconds()
    try:
        return int_in_range(name, value, low, high)
    except ValidationError as exc:
        if isinstance(value, int) and not isinstance(value, bool) and value > high:
            raise ValidationError(
                f"{exc}: {high} is the operator's ceiling ({MAX_TTL_SETTING})"
            ) from None
        raise


def idle_stop_seconds(value: Any) -> int:
    """Stop after this long without activity; 0: never."""
    return within_ceiling("idle_stop_seconds", value, 0)


def boolean(name: str, value: Any) -> bool:
    """Only true or false: the string "false" must not switch isolation off."""
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false (got {value!r})")
    return value


def text(name: str, value: Any, *, max_bytes: int | None = None, allow_nul: bool = False) -> str:
    """A string that can reach the sandbox as it is: UTF-8 (no lone surrogate), no NUL
    unless ``allow_nul``, at most ``max_bytes`` bytes once encoded."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string")
    if not allow_nul and "\0" in value:
        raise ValidationError(f"{name} must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{name} is not valid UTF-8 text (lone surrogate {value[exc.start]!r} "
            f"at character {exc.start})"
        ) from None
    if max_bytes is not None and size > max_bytes:
        raise ValidationError(f"{name} is {size} bytes long; the limit is {max_bytes} bytes")
    return value


def command(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("command must be a non-empty string")
    return text("command", value, max_bytes=MAX_COMMAND_BYTES)


def file_encoding(value: Any) -> str:
    if value not in FILE_ENCODINGS:
        choices = ", ".join(FILE_ENCODINGS)
        raise ValidationError(f"encoding must be one of {choices} (got {value!r})")
    return str(value)


def new_id() -> str:
    """A new 12-hex ID (VMs, workspaces, shells, probes): 48 random bits, no uuid import."""
    return os.urandom(6).hex()


def identifier(kind: str, value: Any) -> str:
    """IDs are 12 lowercase hex characters; anything else cannot name one of ours."""
    if (
        not isinstance(value, str)
        or len(value) != 12
        or not all(c in "0123456789abcdef" for c in value)
    ):
        raise ValidationError(f"{kind} {value!r} does not exist")
    return value
