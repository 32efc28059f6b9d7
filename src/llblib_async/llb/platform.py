"""Target platforms (OS/architecture/variant), parsed and normalized like containerd's ``platforms``.

Go's client/llb stamps image sources (and, later, exec ops) with a platform; when
none is given it uses ``platforms.Normalize(platforms.DefaultSpec())`` — the
platform of the machine running the client.  :func:`default_platform` is the
same thing for the Python process, so equal graphs give equal digests in Go and
here on the same kind of host.
"""

from __future__ import annotations

import functools
import platform as _host
import re
import sys
import urllib.parse
from dataclasses import dataclass

__all__ = ["Platform", "default_platform"]

_SPECIFIER_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_OS_RE = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?", re.ASCII)

_KNOWN_OS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "windows",
        "zos",
    ]
)
_KNOWN_ARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "ppc64",
        "ppc64le",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: ``os``/``architecture`` plus optional ``variant``, OS version and features.

    Instances are used verbatim (like Go's ``llb.Platform(p)``); use
    :meth:`parse` for ``"linux/arm64"``-style strings or :meth:`normalize` to
    canonicalise aliases such as ``x86_64`` or ``aarch64``.
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, specifier: str) -> Platform:
        """Parse ``os[(version[+feature…])][/arch[/variant]]`` like containerd's ``platforms.Parse``.

        A lone OS gets the host architecture, a lone architecture the host OS.
        Raises :class:`ValueError` for a malformed specifier.
        """
        if "*" in specifier:
            raise ValueError(f"{specifier!r}: wildcards not supported in platform specifiers")
        parts = specifier.split("/", 3)
        os_match = _OS_RE.fullmatch(parts[0])
        if os_match is None:
            raise ValueError(f"{parts[0]!r} is an invalid OS component of {specifier!r}")
        os_name = _normalize_os(os_match.group(1))
        os_version = _decode_os_option(os_match.group(2) or "")
        features = tuple(
            f for f in (_decode_os_option(raw) for raw in (os_match.group(3) or "").split("+")[1:]) if f
        )
        for part in parts[1:]:
            if not _SPECIFIER_RE.fullmatch(part):
                raise ValueError(f"{part!r} is an invalid component of {specifier!r}")
        if len(parts) == 1:
            if os_name in _KNOWN_OS:
                host = default_platform()
                return cls(os_name, host.architecture, "", os_version, features)
            arch, variant = _normalize_arch(parts[0], "")
            if arch == "arm" and variant == "v7":
                variant = ""
            if arch in _KNOWN_ARCH:
                return cls(default_platform().os, arch, variant)
            raise ValueError(f"{specifier!r}: unknown operating system or architecture")
        if len(parts) == 2:
            arch, variant = _normalize_arch(parts[1], "")
            if arch == "arm" and variant == "v7":
                variant = ""
            return cls(os_name, arch, variant, os_version, features)
        if len(parts) == 3:
            arch, variant = _normalize_arch(parts[1], parts[2])
            if arch == "arm64" and not variant:
                variant = "v8"
            return cls(os_name, arch, variant, os_version, features)
        raise ValueError(f"{specifier!r}: cannot parse platform specifier")

    def normalize(self) -> Platform:
        """Canonical form like containerd's ``platforms.Normalize``: ``aarch64``, ``arm64/v8`` → ``arm64``."""
        arch, variant = _normalize_arch(self.architecture, self.variant)
        return Platform(
            _normalize_os(self.os),
            arch,
            variant,
            self.os_version,
            tuple(sorted(set(self.os_features))),
        )

    def __str__(self) -> str:
        # containerd's Format: path.Join(os, arch, variant) — empty parts dropped.
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _normalize_os(os_name: str) -> str:
    if not os_name:
        return _host_os()
    os_name = os_name.lower()
    return "darwin" if os_name == "macos" else os_name


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    return arch, variant


def _decode_os_option(value: str) -> str:
    return urllib.parse.unquote(value) if "%" in value else value


def _host_os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "win32":
        return "windows"
    if sys.platform.startswith("freebsd"):
        return "freebsd"
    return sys.platform  # darwin, openbsd, … already match GOOS


def _host_arch() -> tuple[str, str]:
    machine = _host.machine().lower()
    aliases = {"i686": "386", "i586": "386", "x86": "386", "loongarch64": "loong64", "ppc64el": "ppc64le"}
    if machine in aliases:
        return aliases[machine], ""
    if machine.startswith("armv") and len(machine) >= 5:
        # armv7l → arm/v7, armv6l → arm/v6 (what Go's cpuVariant() reads on 32-bit ARM)
        return "arm", "v" + machine[4]
    if machine == "arm64":
        return "arm64", ""
    return machine or "amd64", ""


@functools.cache
def default_platform() -> Platform:
    """The host platform, normalized — Go's ``platforms.Normalize(platforms.DefaultSpec())``."""
    arch, variant = _host_arch()
    return Platform(_host_os(), arch, variant).normalize()
