"""One validator per kind of value, for every door a value comes through.

The Python API, the settings (flags, ini keys, the marker), scenario files,
the command line, ``asyncfaults serve``'s config file and its HTTP API all
take the same kinds of value: a whole number of Toxiproxy's units, a number
of seconds that bounds a wait, a name that ends up in a URL path, a piece of
text, a file to read. Each kind is checked here, once, so that a value that
one door refuses is refused by every other, with the same words: the field
as the user wrote it, the value (shortened: a 10 MB name or an integer of
5000 digits is not printed whole), and what is allowed. A toxic's attributes
are each of a ``Kind`` its toxic declares once (``WholeNumber``, ``Text``,
``OneOf``, ``Regex``): the validator checks against it, and ``serve``'s
``/openapi.json`` describes it.

Why the bounds are where they are:

- integers stay within Toxiproxy's int64 (``INT64_MAX``): a bigger one is a
  decoder error there, and here it would overflow the float the engine turns
  milliseconds into, when the toxic is already half added;
- seconds are finite and at most ``MAX_SECONDS`` (a week): NaN, infinity or
  ``1e300`` is not a bound, and past about 292 years ``threading`` refuses to
  wait at all (``OverflowError``);
- names use URL-safe characters only (``NAME_CHARACTERS``), at most
  ``NAME_MAX`` of them, and are never ``.`` or ``..``: Toxiproxy's clients
  put them in paths unescaped, and a path that normalises differently cannot
  address its proxy;
- files are read with a bound, and only regular files: a FIFO would block the
  reader forever and ``/dev/zero`` never ends.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, final

from ._exceptions import InvalidError

INT64_MAX: Final = 2**63 - 1
"""The largest integer Toxiproxy (Go's int64) takes, and so do we."""
MAX_SECONDS: Final = 7 * 24 * 3600.0
"""The longest wait a bound may set (a week): a bound longer than that bounds nothing."""
NAME_MAX: Final = 128
"""The longest proxy or toxic name."""
NAME_CHARACTERS: Final = "letters, digits, '_', '-', '.' and '~'"
_NAME: Final = re.compile(r"[A-Za-z0-9_.~-]+")
TEXT_MAX: Final = 4096
"""The longest piece of free text (an environment value, a toxic's text attribute)."""
CONFIG_MAX_BYTES: Final = 1024 * 1024
"""``asyncfaults serve --config``: a proxy list this long has thousands of proxies."""
SCENARIO_MAX_BYTES: Final = 1024 * 1024
"""A scenario file: a fault plan of a megabyte is a mistake (or not a scenario)."""
BODY_MAX_BYTES: Final = 1024 * 1024
"""A request body of ``asyncfaults serve``'s HTTP API."""
DATA_MAX_BYTES: Final = 64 * 1024 * 1024
"""``asyncfaults repro --data @FILE``: the one request's body."""
_SHOWN_MAX: Final = 60


def shown(value: object) -> str:
    """``repr(value)``, short enough for one line of an error message.

    An integer too long to print (Python refuses beyond 4300 digits) is told
    by its size; a long text by its start and its length.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * math.log10(2)) + 1
        sign = "a negative" if value < 0 else "an"
        return f"<{sign} integer of about {digits} digits>"
    if isinstance(value, str | bytes) and len(value) > _SHOWN_MAX:
        return f"{value[:_SHOWN_MAX]!r}... ({len(value)} characters)"
    try:
        text = repr(value)
    except Exception:  # a repr that fails (or an int Python will not print) says nothing
        return f"<a {type(value).__name__}>"
    return text if len(text) <= _SHOWN_MAX * 2 else text[: _SHOWN_MAX * 2] + "..."


def key_text(key: object) -> str:
    """A key of a table or an object as a message names it: itself when it is a plain
    word, else its short repr (a key with a newline must not break the message's line)."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]{1,60}", text) else shown(text)


def spelled(field: str, value: object) -> str:
    """How a message names the field and the value the user gave.

    ``field=value``, as the user wrote it; a field that ends in ``=)`` takes
    the value inside its parenthesis (``@pytest.mark.asyncfaults(settle=)``
    becomes ``@pytest.mark.asyncfaults(settle='x')``).
    """
    if field.endswith("=)"):
        return f"{field[:-1]}{shown(value)})"
    return f"{field}={shown(value)}"


def invalid(field: str, value: object, allowed: str) -> InvalidError:
    """The one error of every validator: the field, the value, what is allowed."""
    return InvalidError(f"{spelled(field, value)} is not valid: expected {allowed}")


def out_of_range(field: str, value: object, rule: str) -> InvalidError:
    """A value of the right kind outside its range: ``must be >= 0``."""
    return InvalidError(f"{spelled(field, value)} is not valid: {rule}")


# -- numbers ---------------------------------------------------------------------------------


def is_integer(value: object) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is not 1 milliseconds)."""
    return isinstance(value, int) and not isinstance(value, bool)


def integer(
    field: str,
    value: object,
    *,
    minimum: int = 0,
    maximum: int = INT64_MAX,
    allowed: str | None = None,
) -> int:
    """A whole number from ``minimum`` to ``maximum`` (Toxiproxy's int64 by default)."""
    if not is_integer(value):
        raise invalid(field, value, allowed or f"an integer >= {minimum}")
    assert isinstance(value, int)
    if value < minimum:
        raise out_of_range(field, value, f"must be >= {minimum}")
    if value > maximum:
        why = " (Toxiproxy's 64-bit range)" if maximum == INT64_MAX else ""
        raise out_of_range(field, value, f"must be at most {maximum}{why}")
    return value


def integer_text(field: str, text: object, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer written as text (a flag, an ini key, a URL), read without surprises.

    Only ASCII digits (``int()`` also takes ``"٣"`` and ``"1_000"``), at most as many as
    ``maximum`` has: a number of 5000 digits is refused before Python tries to read it.
    """
    allowed = f"an integer from {minimum} to {maximum}"
    if not isinstance(text, str):
        raise invalid(field, text, allowed)
    stripped = text.strip()
    if not re.fullmatch(f"-?[0-9]{{1,{len(str(maximum))}}}", stripped):
        raise invalid(field, text, allowed)
    value = int(stripped)
    if not minimum <= value <= maximum:
        raise invalid(field, text, allowed)
    return value


def seconds(
    field: str,
    value: object,
    *,
    positive: bool = False,
    maximum: float = MAX_SECONDS,
    text: bool = False,
) -> float:
    """A finite number of seconds, >= 0 (or > 0 when ``positive``), at most ``maximum``.

    ``text``: the value may be written as text (a flag, an ini key).
    """
    allowed = f"a number of seconds {'> 0' if positive else '>= 0'}"
    number: float
    if isinstance(value, bool):
        raise invalid(field, value, allowed)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # 10**400: no float holds it
            number = math.inf
    elif text and isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            raise invalid(field, value, allowed) from None
    else:
        raise invalid(field, value, allowed)
    if math.isnan(number) or number < 0 or (positive and number == 0):
        raise invalid(field, value, allowed)
    if number > maximum:
        raise out_of_range(
            field, value, f"must be at most {maximum:g} seconds (a bound past that bounds nothing)"
        )
    return number


def fraction(field: str, value: object) -> float:
    """A share from 0.0 to 1.0 (a toxic's toxicity)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid(field, value, "a number from 0.0 to 1.0")
    try:
        number = float(value)
    except OverflowError:
        raise invalid(field, value, "a number from 0.0 to 1.0") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise invalid(field, value, "a number from 0.0 to 1.0")
    return number


# -- names and text --------------------------------------------------------------------------


def name(field: str, value: object) -> str:
    """A proxy's or a toxic's name: URL-safe characters, at most ``NAME_MAX``, not . or .."""
    allowed = f"a name of 1 to {NAME_MAX} {NAME_CHARACTERS}, other than '.' and '..'"
    if (
        not isinstance(value, str)
        or len(value) > NAME_MAX
        or not _NAME.fullmatch(value)
        or value in (".", "..")
    ):
        raise invalid(field, value, allowed)
    return value


def text(field: str, value: object, *, max_length: int = TEXT_MAX, allowed: str = "text") -> str:
    """Free text: a string without NUL (no C API takes it), at most ``max_length`` long."""
    if not isinstance(value, str) or "\x00" in value or len(value) > max_length:
        raise invalid(field, value, f"{allowed} without NUL, at most {max_length} characters")
    return value


def choice(field: str, value: object, options: tuple[str, ...]) -> str:
    """One of ``options``, exactly."""
    if not isinstance(value, str) or value not in options:
        raise invalid(field, value, "one of " + ", ".join(map(repr, options)))
    return value


# -- the kinds of a toxic's attributes -----------------------------------------------------


AttributeValue = int | str
"""What a toxic's attribute holds: a whole number (Toxiproxy's toxics), or text (a
protocol toxic's SQLSTATE, regex, SMTP command...)."""


class Kind(Protocol):
    """What one attribute of a toxic holds: how it is checked, its default, its words."""

    @property
    def default(self) -> AttributeValue:
        """The value of an attribute left out (0, as Toxiproxy, for a number)."""
        ...

    def check(self, field: str, value: object) -> AttributeValue:
        """The value, checked; ``InvalidError`` naming ``field`` otherwise."""
        ...

    def describe(self) -> str:
        """What is allowed, for "expected ..." ("a whole number of ms >= 0")."""
        ...

    def schema(self) -> dict[str, Any]:
        """The same, as JSON Schema (``asyncfaults serve``'s ``/openapi.json``)."""
        ...


@final
@dataclass(frozen=True, slots=True)
class WholeNumber:
    """An integer attribute in Toxiproxy's units (ms, KB/s, bytes, us), 0 to int64."""

    unit: str
    minimum: int = 0
    maximum: int = INT64_MAX
    default: int = 0
    what: str = ""
    """What is allowed, in words, when a range alone does not say it (an SMTP reply
    code, ``0`` or ``1`` for a switch): then every mistake is told with these words."""

    def check(self, field: str, value: object) -> int:
        if not self.what:
            return integer(field, value, minimum=self.minimum, maximum=self.maximum)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(field, value, self.what)
        if not self.minimum <= value <= self.maximum:
            raise invalid(field, value, self.what)
        return value

    def describe(self) -> str:
        return self.what or f"a whole number >= {self.minimum}"

    def schema(self) -> dict[str, Any]:
        words = self.what or (self.unit and f"in {self.unit}")
        return {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
            **({"description": words} if words else {}),
        }


@final
@dataclass(frozen=True, slots=True)
class Text:
    """A text attribute (a protocol-aware toxic's message, a pattern to match)."""

    max_length: int = TEXT_MAX
    pattern: str | None = None
    """A regular expression the whole text must match, if any."""
    what: str = "text"
    """What is allowed, in words, for the message ("a 5-character SQLSTATE")."""
    default: str = ""

    def check(self, field: str, value: object) -> str:
        if self.pattern is None:
            return text(field, value, max_length=self.max_length, allowed=self.what)
        # A pattern says all that is allowed, in ``what``: every mistake is told in its words.
        if (
            not isinstance(value, str)
            or len(value) > self.max_length
            or "\x00" in value
            or not re.fullmatch(self.pattern, value)
        ):
            raise invalid(field, value, self.what)
        return value

    def describe(self) -> str:
        return self.what

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        return {**out, "description": self.what}


@final
@dataclass(frozen=True, slots=True)
class OneOf:
    """A text attribute naming one of a few things (an SMTP command, a login's action)."""

    options: tuple[str, ...]
    default: str = ""
    """The value left out; ``""`` (none of the options) when the toxic needs it given,
    which its ``Stage.check`` then says."""

    def check(self, field: str, value: object) -> str:
        return choice(field, value, self.options)

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.options))

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.options)}


@final
@dataclass(frozen=True, slots=True)
class Regex:
    """A regular expression (Python's ``re``), checked to compile when it is given, not
    when the first statement meets it in the engine's thread."""

    max_length: int = TEXT_MAX
    default: str = ""

    def check(self, field: str, value: object) -> str:
        checked = text(field, value, max_length=self.max_length, allowed=self.describe())
        try:
            re.compile(checked)
        except re.error as exc:
            raise out_of_range(field, value, f"the regex does not compile ({exc})") from None
        return checked

    def describe(self) -> str:
        return "a regular expression (Python's re)"

    def schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "maxLength": self.max_length,
            "format": "regex",
            "description": "Python's re, searched in the text",
        }


def takes_text(kind: Kind) -> bool:
    """Whether an attribute of this kind is text (its default says so): a command line
    takes its value as written, not as a number."""
    return isinstance(kind.default, str)


MILLISECONDS: Final = WholeNumber("ms")
KILOBYTES_PER_SECOND: Final = WholeNumber("KB/s")
BYTES: Final = WholeNumber("bytes")
MICROSECONDS: Final = WholeNumber("us")
COUNT: Final = WholeNumber("")


def kinds_of(declared: Mapping[str, Kind] | None, names: tuple[str, ...]) -> Mapping[str, Kind]:
    """A toxic's attribute kinds: as declared, or every name a whole number (Toxiproxy's)."""
    if declared is not None:
        return declared
    return dict.fromkeys(names, COUNT)


# -- files -----------------------------------------------------------------------------------


def read_bounded(where: str, path: str | os.PathLike[str], limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them, or one ``InvalidError``.

    Opened without blocking (a FIFO with no writer would hold ``open`` forever)
    and refused unless it is a regular file; read up to one byte past the
    limit, so a file that grows while read is refused too, never read whole.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(mode)
                else "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket"
                if stat.S_ISSOCK(mode)
                else "not a regular file"
            )
            raise InvalidError(f"{where}: cannot read it: it is {kind}, expected a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InvalidError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise InvalidError(f"{where}: too large: the limit is {limit} bytes")
    return b"".join(chunks)
