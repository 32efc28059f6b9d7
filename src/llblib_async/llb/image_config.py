"""The OCI/Docker image config a State can carry, with its build history.

An :class:`ImageConfig` is an immutable value mirroring what registries store
as an image's config blob (Docker's flavour of the OCI image config, as Go's
``dockerspec.DockerOCIImage``) plus the legacy ``container_config`` subset.  It
travels on ``State.image_config``; the helpers in :mod:`.config_ops` derive new
configs (ENV, LABEL, CMD… and RUN/COPY/MERGE/DIFF history) and
:func:`~.config_ops.marshal_with_image_config` hands the JSON to an exporter.

JSON goes both ways in Docker's field names: :meth:`ImageConfig.to_json` writes
exactly the bytes Go's ``encoding/json`` writes for llblib's ``ImageConfig``
(field order, omitted empties, ``\\u003c``-style escapes), so configs — and the
digests of exported config blobs — match the Go implementation;
:meth:`ImageConfig.from_json` decodes like Go (case-insensitive keys, ``null``
as "unset", unknown keys dropped).  Timestamps are kept as RFC 3339 strings
with their nanoseconds, because Python's ``datetime`` would lose them and so
change a re-encoded base image's history.

How configs are *obtained* (the ``ImageConfigResolver`` protocol) is
:mod:`.image_resolver`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ..errors import BuildKitError
from .platform import Platform

__all__ = [
    "EMPTY_PLATFORM",
    "EXPORTER_IMAGE_CONFIG_KEY",
    "HISTORY_COMMENT",
    "IMAGE_CONFIG_DESCRIPTION_KEY",
    "ZERO_TIME",
    "BaseImage",
    "ContainerConfig",
    "HealthCheck",
    "History",
    "ImageConfig",
    "ImageConfigError",
    "RootFS",
    "RunConfig",
    "format_epoch",
    "go_json",
    "shell_join",
    "source_date_epoch",
]

ZERO_TIME: Final = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time`` as JSON: the ``created`` of every history record the helpers write."""

HISTORY_COMMENT: Final = "llblib.v0"
"""``comment`` of every history record the helpers write (llblib's value, kept for compatibility)."""

IMAGE_CONFIG_DESCRIPTION_KEY: Final = "llblib.imageconfig"
"""Op-metadata description key that carries the config JSON inside a marshaled Definition."""

EXPORTER_IMAGE_CONFIG_KEY: Final = "containerimage.config"
"""Result-metadata / exporter attribute BuildKit's image exporters read the config from."""

EMPTY_PLATFORM: Final = Platform("", "")
"""The platform of a config that names none (``"architecture":"","os":""`` in JSON)."""

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class ImageConfigError(BuildKitError, ValueError):
    """An image config that cannot be decoded (bad JSON, wrong types) or an invalid value."""


# --- Go-compatible encoding helpers -----------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]")
_GO_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _go_safe(value: str) -> str:
    # Go's decoder turns lone surrogates (from "\ud800" escapes) into U+FFFD; Python keeps them
    # and then cannot encode them as UTF-8.
    return _SURROGATES.sub("\ufffd", value) if _SURROGATES.search(value) else value


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _go_safe(value)
    if isinstance(value, dict):
        return {_go_safe(k): _clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    return value


def go_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` encoded like Go's ``json.Marshal``: compact, UTF-8, ``<``/``>``/``&`` escaped.

    Dict keys keep their insertion order (callers order struct fields like Go
    and sort map keys themselves).  ``indent`` pretty-prints (for golden files).
    """
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(_clean_strings(value), ensure_ascii=False, separators=separators, indent=indent)
    # These characters only occur inside JSON strings, so a plain translation is safe.
    return text.translate(_GO_HTML_ESCAPES)


_SHELL_SPECIAL = frozenset("\\'\"`${[|&;<>()*?!")
_SHELL_BREAKING = frozenset(" \t\n")


def _shell_quote(word: str) -> str:
    if not word:
        return "''"
    if any(c in _SHELL_BREAKING for c in word):
        # Whitespace cannot be backslash-escaped readably: single-quote the whole word and splice
        # each embedded ' in as \' between quoted runs (quotes only opened around actual text).
        runs = word.split("'")
        return "\\'".join(f"'{run}'" if run else "" for run in runs)
    out: list[str] = []
    for i, c in enumerate(word):
        if c in _SHELL_SPECIAL or (i == 0 and c == "~"):
            out.append("\\")
        out.append(c)
    return "".join(out)


def shell_join(*words: str) -> str:
    """Quote ``words`` for a POSIX shell exactly like Go's ``go-shellquote.Join``.

    History text must match llblib's byte for byte, and Python's
    :func:`shlex.quote` differs (``$HOME`` → Go ``\\$HOME``, Python ``'$HOME'``):
    special characters are backslash-escaped (``~`` only at the start of a
    word); a word containing a space, tab or newline is single-quoted instead;
    the empty word is ``''``.
    """
    return " ".join(_shell_quote(w) for w in words)


# --- timestamps ---------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_UNIX_EPOCH = datetime.datetime(1970, 1, 1)


def _format_timestamp(wall: datetime.datetime, nanos: int, offset_min: int) -> str:
    # Go's RFC3339Nano: 4-digit year, fraction without trailing zeros, "Z" for a zero offset.
    text = (
        f"{wall.year:04d}-{wall.month:02d}-{wall.day:02d}T{wall.hour:02d}:{wall.minute:02d}:{wall.second:02d}"
    )
    fraction = f"{nanos:09d}".rstrip("0")
    if fraction:
        text += "." + fraction
    if offset_min == 0:
        return text + "Z"
    sign = "-" if offset_min < 0 else "+"
    return text + f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"


def _parse_timestamp(text: str) -> tuple[str, int]:
    """Canonical RFC 3339 text of ``text`` as Go re-encodes it, and its UTC instant in nanoseconds."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ImageConfigError(f"invalid timestamp {text!r}: not RFC 3339")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        wall = datetime.datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise ImageConfigError(f"invalid timestamp {text!r}: {err}") from None
    # Go keeps nanoseconds; further digits are truncated.
    nanos = int(((m.group(7) or "") + "000000000")[:9])
    offset_min = 0
    if m.group(8) is None:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise ImageConfigError(f"invalid timestamp {text!r}: bad time zone offset")
        offset_min = (oh * 60 + om) * (-1 if m.group(9) == "-" else 1)
    seconds = (wall - _UNIX_EPOCH) // datetime.timedelta(seconds=1) - offset_min * 60
    return _format_timestamp(wall, nanos, offset_min), seconds * 1_000_000_000 + nanos


def _canonical_timestamp(text: str) -> str:
    return _parse_timestamp(text)[0]


def format_epoch(epoch: int | datetime.datetime) -> str:
    """An epoch (Unix seconds, or an aware ``datetime``) as the UTC RFC 3339 text configs use."""
    if isinstance(epoch, datetime.datetime):
        if epoch.tzinfo is None:
            raise ValueError("epoch datetime must be timezone-aware (e.g. datetime.UTC)")
        utc = epoch.astimezone(datetime.UTC).replace(tzinfo=None)
        return _format_timestamp(utc.replace(microsecond=0), utc.microsecond * 1000, 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError(f"epoch must be an int (Unix seconds) or a datetime, got {epoch!r}")
    return _format_timestamp(_UNIX_EPOCH + datetime.timedelta(seconds=epoch), 0, 0)


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """``$SOURCE_DATE_EPOCH`` as an int, or ``None`` when unset or empty.

    Raises :class:`ValueError` for a value that is not a non-negative integer, so
    a typo does not silently produce non-reproducible images.
    """
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "")
    if not value:
        return None
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"SOURCE_DATE_EPOCH must be a non-negative integer, got {value!r}")
    return int(value)


# --- the model ----------------------------------------------------------------------------------------


def _str_tuple(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a sequence of str, not a str")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what} entries must be str, got {type(v).__name__}")
    return out


def _sorted_unique(values: Iterable[str], what: str) -> tuple[str, ...]:
    return tuple(sorted(set(_str_tuple(values, what))))


def _pairs(values: Mapping[str, str] | Iterable[tuple[str, str]], what: str) -> tuple[tuple[str, str], ...]:
    items = dict(values.items() if isinstance(values, Mapping) else values)
    for k, v in items.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{what} keys and values must be str")
    return tuple(sorted(items.items()))


def _duration_ns(value: int | datetime.timedelta, what: str) -> int:
    if isinstance(value, datetime.timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1_000
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int (nanoseconds) or a timedelta, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Docker's ``HEALTHCHECK`` settings; durations are integer nanoseconds (0 = inherit).

    ``test`` is ``()`` (inherit), ``("NONE",)``, ``("CMD", arg…)`` or
    ``("CMD-SHELL", command)``.  Build one with :meth:`of` to give durations as
    :class:`~datetime.timedelta`.
    """

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", _str_tuple(self.test, "healthcheck test"))
        for name in ("interval", "timeout", "start_period", "start_interval", "retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"healthcheck {name} must be an int, got {value!r}")
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise ValueError(f"healthcheck {name} {value} does not fit in int64")

    @classmethod
    def of(
        cls,
        *test: str,
        interval: int | datetime.timedelta = 0,
        timeout: int | datetime.timedelta = 0,
        start_period: int | datetime.timedelta = 0,
        start_interval: int | datetime.timedelta = 0,
        retries: int = 0,
    ) -> HealthCheck:
        """``HealthCheck.of("CMD", "/bin/true", interval=timedelta(minutes=10), retries=3)``."""
        return cls(
            test=test,
            interval=_duration_ns(interval, "interval"),
            timeout=_duration_ns(timeout, "timeout"),
            start_period=_duration_ns(start_period, "start_period"),
            start_interval=_duration_ns(start_interval, "start_interval"),
            retries=retries,
        )

    def to_dict(self) -> dict[str, Any]:
        """Go's JSON object (``Test``, ``Interval``… each omitted when empty/zero)."""
        out: dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The ``config`` section: how containers of the image run (Docker's ``ContainerConfig`` subset).

    Sets and maps are tuples stored sorted and de-duplicated (``exposed_ports``,
    ``volumes``; ``labels`` as ``(key, value)`` pairs, the last value of a key
    winning) so equal configs compare equal and hash alike whatever order they
    were built in.  Empty values are omitted from JSON, as Go does.
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: HealthCheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exposed_ports", _sorted_unique(self.exposed_ports, "exposed_ports"))
        object.__setattr__(self, "volumes", _sorted_unique(self.volumes, "volumes"))
        object.__setattr__(self, "labels", _pairs(self.labels, "labels"))
        for name in ("env", "entrypoint", "cmd", "on_build", "shell"):
            object.__setattr__(self, name, _str_tuple(getattr(self, name), name))

    @property
    def label_map(self) -> dict[str, str]:
        """``labels`` as a new dict."""
        return dict(self.labels)

    def get_env(self, key: str) -> str | None:
        """The value of ``key`` in ``env`` (first ``key=`` entry), or ``None``."""
        prefix = key + "="
        for entry in self.env:
            if entry.startswith(prefix):
                return entry[len(prefix) :]
        return None

    def to_dict(self) -> dict[str, Any]:
        """Go's JSON object, keys in Go's order, empty fields omitted."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_dict()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell:
            out["Shell"] = list(self.shell)
        return out


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """The legacy (schema 1) ``container_config``: only ``Cmd`` and ``Labels`` are kept.

    ``None`` serialises as JSON ``null``; both keys are always written.
    """

    cmd: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if self.cmd is not None:
            object.__setattr__(self, "cmd", _str_tuple(self.cmd, "container_config cmd"))
        if self.labels is not None:
            object.__setattr__(self, "labels", _pairs(self.labels, "container_config labels"))

    def to_dict(self) -> dict[str, Any]:
        """``{"Cmd": …, "Labels": …}``."""
        return {
            "Cmd": None if self.cmd is None else list(self.cmd),
            "Labels": None if self.labels is None else dict(self.labels),
        }


@dataclass(frozen=True, slots=True)
class History:
    """One history entry (OCI ``history[]``); ``created`` is RFC 3339 text or ``None``.

    ``merge_key`` is bookkeeping that is never serialised and ignored by ``==``:
    the records the ENV/LABEL helpers write carry their instruction there, so a
    following helper call of the same instruction extends that record
    (``ENV A=one B=two``) instead of adding one.  Records decoded from JSON or
    inherited from a base image have none and are never extended.
    """

    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    merge_key: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.created is not None:
            object.__setattr__(self, "created", _canonical_timestamp(self.created))

    def to_dict(self) -> dict[str, Any]:
        """Go's JSON object (empty fields omitted)."""
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@dataclass(frozen=True, slots=True)
class RootFS:
    """The layer list: ``type`` (``"layers"``) and ``diff_ids`` (``None`` serialises as ``null``)."""

    type: str = ""
    diff_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.diff_ids is not None:
            object.__setattr__(self, "diff_ids", _str_tuple(self.diff_ids, "diff_ids"))

    def to_dict(self) -> dict[str, Any]:
        """``{"type": …, "diff_ids": …}`` (both always written)."""
        return {"type": self.type, "diff_ids": None if self.diff_ids is None else list(self.diff_ids)}


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The image a config is layered on whose own config has not been resolved yet.

    ``llb.image(ref)`` puts one on its State's config (:attr:`ImageConfig.base`):
    building the State needs no registry, and when a request exports the State as an
    image, the pipeline resolves the base's config through the session's resolver and
    merges the State's config on top of it, as a Dockerfile ``FROM`` does
    (:func:`~llblib_async.llb.merge_base_config`). ``ref`` is the normalised reference of
    the source (pinned digest included), ``platform`` the platform the source was asked
    for (``None``: the marshal default, the host's).
    """

    ref: str
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """An image config: platform, run settings, legacy container config, history, layers.

    Immutable and hashable; derive changed copies with :func:`dataclasses.replace`
    or the helpers in :mod:`llblib_async.llb.config_ops`.  ``created`` is RFC 3339
    text (nanoseconds kept) or ``None``.  Equality is equality of the JSON
    (:attr:`History.merge_key` aside) and of :attr:`base`.

    ``base`` is not part of the JSON: it says that this config is layered on an
    image whose config is still to be resolved (a :class:`BaseImage`, set by
    ``llb.image``); :func:`dataclasses.replace` and the config helpers keep it, a
    config built anew (a resolved image's, a frontend's) has none.
    """

    platform: Platform = EMPTY_PLATFORM
    config: RunConfig = field(default_factory=RunConfig)
    container_config: ContainerConfig = field(default_factory=ContainerConfig)
    history: tuple[History, ...] = ()
    rootfs: RootFS = field(default_factory=RootFS)
    created: str | None = None
    author: str = ""
    base: BaseImage | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "history", tuple(self.history))
        if self.created is not None:
            object.__setattr__(self, "created", _canonical_timestamp(self.created))

    @property
    def is_bare_base(self) -> bool:
        """True for the config ``llb.image`` starts a State with: a :attr:`base` and nothing else.

        Such a config has nothing of its own to export: exporting the State exports
        the base's config (or, with the base's config not resolved, no config at all).
        """
        if self.base is None or self.history or self.created is not None:
            return False  # the fast answer for every config a helper touched
        return replace(self, base=None) == _EMPTY_CONFIG

    # --- JSON -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as Go writes it for llblib's ``ImageConfig`` (fields in Go's order).

        :attr:`base` is not written (it is a note for the request pipeline).
        """
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        p = self.platform
        out["architecture"] = p.architecture
        out["os"] = p.os
        if p.os_version:
            out["os.version"] = p.os_version
        if p.os_features:
            out["os.features"] = list(p.os_features)
        if p.variant:
            out["variant"] = p.variant
        out["rootfs"] = self.rootfs.to_dict()
        out["config"] = self.config.to_dict()
        out["container_config"] = self.container_config.to_dict()
        if self.history:
            out["history"] = [h.to_dict() for h in self.history]
        return out

    def to_json(self, *, indent: int | None = None) -> bytes:
        """UTF-8 JSON, byte-identical to Go's ``json.Marshal`` of the same config (when ``indent`` is None).

        Deterministic: the same config always gives the same bytes.
        """
        return go_json(self.to_dict(), indent=indent).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ImageConfig:
        """Decode a config blob like Go's ``json.Unmarshal`` into llblib's ``ImageConfig``.

        Keys match case-insensitively, ``null`` means "unset", unknown keys (for
        example ``docker_version`` or ``config.Hostname``) are dropped, and
        ``container_config`` keeps only ``Cmd`` and ``Labels``.  Use
        :meth:`adopted` on configs that come from images.  Raises
        :class:`ImageConfigError` for invalid JSON or wrongly typed values.
        """
        try:
            obj = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as err:
            raise ImageConfigError(f"invalid image config JSON: {err}") from None
        if obj is None:
            return cls()
        return _decode_image(obj)

    # --- derived configs --------------------------------------------------------------------------

    def adopted(self) -> ImageConfig:
        """This config as taken over from an image: ``container_config`` normalised.

        ``Cmd`` becomes the container config's own ``Cmd`` or else ``config.Cmd``;
        a classic-builder ``["/bin/sh","-c","#(nop) ","CMD [...]"]`` is reduced to
        the JSON list after ``CMD``; ``Labels`` becomes the container config's,
        else ``config.Labels``, else empty (so it serialises as ``{}``).  This is
        what llblib applies to every config it resolves, so outputs stay
        comparable whatever builder produced the base image.
        """
        cc = self.container_config
        cmd = cc.cmd if cc.cmd is not None else (self.config.cmd or None)
        if cmd is not None and len(cmd) > 3 and cmd[2] == "#(nop) ":
            text = cmd[3].removeprefix("CMD ")
            try:
                parsed = json.loads(text, parse_constant=_reject_constant)
            except ValueError:
                parsed = cmd  # not JSON: keep the original list, as llblib does
            if parsed is None:
                cmd = None
            elif isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                cmd = tuple(parsed)
        labels = cc.labels if cc.labels is not None else self.config.labels
        return replace(self, container_config=ContainerConfig(cmd=cmd, labels=labels))

    def with_epoch(self, epoch: int | datetime.datetime) -> ImageConfig:
        """This config with reproducible timestamps for ``epoch`` (e.g. ``SOURCE_DATE_EPOCH``).

        The image's ``created`` becomes ``epoch``; so does every history record
        with no time, the zero time (all records the helpers write) or a time
        after ``epoch`` (clamped, as BuildKit's exporter does); older base-image
        records keep theirs.
        """
        stamp = format_epoch(epoch)
        limit = _parse_timestamp(stamp)[1]
        history = []
        for h in self.history:
            if h.created is None or h.created == ZERO_TIME or _parse_timestamp(h.created)[1] > limit:
                h = replace(h, created=stamp)
            history.append(h)
        return replace(self, created=stamp, history=tuple(history))


_EMPTY_CONFIG: Final = ImageConfig()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


# --- decoding (Go encoding/json semantics) -----------------------------------------------------------


def _fields(obj: Any, path: str, names: Sequence[str]) -> dict[str, Any]:
    """The known fields of JSON object ``obj``: Go matches keys case-insensitively, last one wins."""
    if not isinstance(obj, dict):
        raise ImageConfigError(f"{path}: expected a JSON object, got {_kind(obj)}")
    lowered = {n.lower(): n for n in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in names else lowered.get(key.lower())
        if name is not None:
            out[name] = value
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _d_str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageConfigError(f"{path}: expected a string, got {_kind(value)}")
    return _go_safe(value)


def _d_bool(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ImageConfigError(f"{path}: expected a boolean, got {_kind(value)}")
    return value


def _d_int(value: Any, path: str) -> int:
    if value is None:
        return 0
    # Go decodes into int64 only from integral JSON numbers (6e+11 is rejected).
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImageConfigError(f"{path}: expected an integer, got {_kind(value)} {value!r}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ImageConfigError(f"{path}: {value} does not fit in int64")
    return value


def _d_str_list(value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ImageConfigError(f"{path}: expected an array of strings, got {_kind(value)}")
    return tuple(_d_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _d_str_map(value: Any, path: str) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ImageConfigError(f"{path}: expected an object of strings, got {_kind(value)}")
    return tuple(sorted((_go_safe(k), _d_str(v, f"{path}.{k}")) for k, v in value.items()))


def _d_set(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ImageConfigError(f"{path}: expected an object, got {_kind(value)}")
    for k, v in value.items():
        if v is not None and not isinstance(v, dict):
            raise ImageConfigError(f"{path}.{k}: expected an object, got {_kind(v)}")
    return tuple(sorted(_go_safe(k) for k in value))


def _d_time(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImageConfigError(f"{path}: expected an RFC 3339 string, got {_kind(value)}")
    try:
        return _canonical_timestamp(value)
    except ImageConfigError as err:
        raise ImageConfigError(f"{path}: {err}") from None


def _decode_healthcheck(obj: Any, path: str) -> HealthCheck | None:
    if obj is None:
        return None
    f = _fields(obj, path, ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"))
    return HealthCheck(
        test=_d_str_list(f.get("Test"), f"{path}.Test") or (),
        interval=_d_int(f.get("Interval"), f"{path}.Interval"),
        timeout=_d_int(f.get("Timeout"), f"{path}.Timeout"),
        start_period=_d_int(f.get("StartPeriod"), f"{path}.StartPeriod"),
        start_interval=_d_int(f.get("StartInterval"), f"{path}.StartInterval"),
        retries=_d_int(f.get("Retries"), f"{path}.Retries"),
    )


_RUN_CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


def _decode_run_config(obj: Any) -> RunConfig:
    if obj is None:
        return RunConfig()
    f = _fields(obj, "config", _RUN_CONFIG_FIELDS)
    return RunConfig(
        user=_d_str(f.get("User"), "config.User"),
        exposed_ports=_d_set(f.get("ExposedPorts"), "config.ExposedPorts"),
        env=_d_str_list(f.get("Env"), "config.Env") or (),
        entrypoint=_d_str_list(f.get("Entrypoint"), "config.Entrypoint") or (),
        cmd=_d_str_list(f.get("Cmd"), "config.Cmd") or (),
        volumes=_d_set(f.get("Volumes"), "config.Volumes"),
        working_dir=_d_str(f.get("WorkingDir"), "config.WorkingDir"),
        labels=_d_str_map(f.get("Labels"), "config.Labels") or (),
        stop_signal=_d_str(f.get("StopSignal"), "config.StopSignal"),
        args_escaped=_d_bool(f.get("ArgsEscaped"), "config.ArgsEscaped"),
        healthcheck=_decode_healthcheck(f.get("Healthcheck"), "config.Healthcheck"),
        on_build=_d_str_list(f.get("OnBuild"), "config.OnBuild") or (),
        shell=_d_str_list(f.get("Shell"), "config.Shell") or (),
    )


def _decode_history(obj: Any) -> tuple[History, ...]:
    if obj is None:
        return ()
    if not isinstance(obj, list):
        raise ImageConfigError(f"history: expected an array, got {_kind(obj)}")
    out = []
    for i, item in enumerate(obj):
        path = f"history[{i}]"
        if item is None:
            out.append(History())
            continue
        f = _fields(item, path, ("created", "created_by", "author", "comment", "empty_layer"))
        out.append(
            History(
                created=_d_time(f.get("created"), f"{path}.created"),
                created_by=_d_str(f.get("created_by"), f"{path}.created_by"),
                author=_d_str(f.get("author"), f"{path}.author"),
                comment=_d_str(f.get("comment"), f"{path}.comment"),
                empty_layer=_d_bool(f.get("empty_layer"), f"{path}.empty_layer"),
            )
        )
    return tuple(out)


_IMAGE_FIELDS = (
    "created",
    "author",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "rootfs",
    "config",
    "container_config",
    "history",
)


def _decode_image(obj: Any) -> ImageConfig:
    f = _fields(obj, "image config", _IMAGE_FIELDS)
    rootfs = RootFS()
    if f.get("rootfs") is not None:
        rf = _fields(f["rootfs"], "rootfs", ("type", "diff_ids"))
        rootfs = RootFS(
            type=_d_str(rf.get("type"), "rootfs.type"),
            diff_ids=_d_str_list(rf.get("diff_ids"), "rootfs.diff_ids"),
        )
    container = ContainerConfig()
    if f.get("container_config") is not None:
        cf = _fields(f["container_config"], "container_config", ("Cmd", "Labels"))
        container = ContainerConfig(
            cmd=_d_str_list(cf.get("Cmd"), "container_config.Cmd"),
            labels=_d_str_map(cf.get("Labels"), "container_config.Labels"),
        )
    return ImageConfig(
        platform=Platform(
            os=_d_str(f.get("os"), "os"),
            architecture=_d_str(f.get("architecture"), "architecture"),
            variant=_d_str(f.get("variant"), "variant"),
            os_version=_d_str(f.get("os.version"), "os.version"),
            os_features=_d_str_list(f.get("os.features"), "os.features") or (),
        ),
        config=_decode_run_config(f.get("config")),
        container_config=container,
        history=_decode_history(f.get("history")),
        rootfs=rootfs,
        created=_d_time(f.get("created"), "created"),
        author=_d_str(f.get("author"), "author"),
    )
