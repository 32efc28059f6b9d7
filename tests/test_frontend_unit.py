"""Sans-IO parts of the frontend support: ignore files, Dockerfile options, source maps, error details."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from llblib_async import llb
from llblib_async._pb import pb
from llblib_async._wire.grpc_errors import (
    TYPE_FRONTEND,
    TYPE_SOURCE,
    TYPE_STACK,
    ErrorDetail,
    frontend_of,
    sources_of,
    stack_of,
)
from llblib_async.errors import DockerfileError, SolveError, SourceLocation
from llblib_async.llb.dockerfile import read_dockerignore
from llblib_async.llb.frontend import frontend_spec


def test_read_dockerignore_matches_moby_ignorefile() -> None:
    # moby/patternmatcher ignorefile_test.go's case, plus a BOM, "..", and spaces.
    content = (
        b"\xef\xbb\xbftest1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n"
        b"! /inverted/abs/path\n!\n! "
    )
    assert read_dockerignore(content) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "!",
        "!",
    ]
    assert read_dockerignore(b"  a/b/../c  \r\n/\n  # not a comment\n") == ["a/c", "/", "# not a comment"]


def test_source_location_snippet() -> None:
    place = SourceLocation(
        "Dockerfile", b"FROM a\nRUN b\nRUN c \\\n  d\nCMD e\nENV f\n", "Dockerfile", ((3, 0, 4, 0),)
    )
    assert place.line == 3
    assert place.snippet(context=1).splitlines() == [
        "Dockerfile:3-4",
        "-" * 20,
        " 2 |     RUN b",
        " 3 | >>> RUN c \\",
        " 4 | >>>   d",
        " 5 |     CMD e",
        "-" * 20,
    ]
    assert SourceLocation("x", b"", "", ((7, 0, 7, 0),)).snippet() == "x:7"
    err = SolveError("boom", vertex_name="[2/2] RUN c", sources=[place], logs="tail")
    assert str(err).startswith("[2/2] RUN c: boom\nDockerfile:3-4\n")
    assert str(err).endswith("\ntail")


def test_error_details_are_decoded_defensively() -> None:
    data = base64.b64encode(b"FROM a\nRUNN b\n").decode()
    details = [
        ErrorDetail(TYPE_SOURCE, {"info": {"filename": "D", "data": data, "language": "Dockerfile"},
                                  "ranges": [{"start": {"line": 2}, "end": {"line": 2, "character": 4}}]}),
        ErrorDetail(TYPE_SOURCE, {"info": {"filename": 3, "data": "not base64!"},
                                  "ranges": [{"start": "x"}]}),
        ErrorDetail(TYPE_SOURCE, {"info": "nope"}),
        ErrorDetail(TYPE_FRONTEND, {"name": "dockerfile.v0"}),
        ErrorDetail(TYPE_STACK, {"frames": [{"Name": "main.f", "File": "f.go", "Line": 3}, "junk"]}),
    ]  # fmt: skip
    sources = sources_of(details)
    assert sources[0] == SourceLocation("D", b"FROM a\nRUNN b\n", "Dockerfile", ((2, 0, 2, 4),))
    assert sources[1] == SourceLocation("", b"", "", ((0, 0, 0, 0),))
    assert len(sources) == 2
    assert frontend_of(details) == "dockerfile.v0"
    assert stack_of(details) == ["main.f (f.go:3)"]


def test_dockerfile_options_become_frontend_attrs(tmp_path: Path) -> None:
    named = llb.scratch().mkfile("/x", "x")
    st = llb.dockerfile(
        "FROM scratch\n",
        build_args={"A": "1"},
        target="final",
        platforms=["linux/amd64", "linux/arm64/v8"],
        labels={"l": "v"},
        no_cache=["build", "final"],
        filename="sub/app.Dockerfile",
        named_contexts={
            "st": named,
            "dir": tmp_path,
            "img": "docker-image://127.0.0.1:5000/busybox:latest",
            "git": "https://example.invalid/repo.git#main",
        },
        opts={"add-hosts": "h=1.2.3.4"},
    )
    spec = frontend_spec(st)
    assert spec is not None
    assert spec.source == "dockerfile.v0"
    local_name = next(iter(spec.locals))
    assert dict(spec.opts) == {
        "filename": "sub/app.Dockerfile",
        "build-arg:A": "1",
        "label:l": "v",
        "target": "final",
        "platform": "linux/amd64,linux/arm64",
        "no-cache": "build,final",
        "context:st": "input:named-st",
        "context:dir": f"local:{local_name}",
        "context:img": "docker-image://127.0.0.1:5000/busybox:latest",
        "context:git": "https://example.invalid/repo.git#main",
        "add-hosts": "h=1.2.3.4",
    }
    assert spec.locals[local_name] == tmp_path
    assert sorted(spec.inputs) == ["context", "dockerfile", "named-st"]
    assert frontend_spec(llb.dockerfile("FROM scratch\n", no_cache=True)).opts["no-cache"] == ""  # type: ignore[union-attr]
    assert frontend_spec(st.mkdir("/y")) is None  # built on: not the frontend's result any more
    assert frontend_spec(llb.scratch()) is None


def test_dockerfile_path_reads_its_directory_through_the_session(tmp_path: Path) -> None:
    (tmp_path / "app.Dockerfile").write_text("FROM scratch\n")
    spec = frontend_spec(llb.dockerfile(tmp_path / "app.Dockerfile"))
    assert spec is not None
    assert spec.opts["filename"] == "app.Dockerfile"
    assert spec.locals[spec.opts["dockerfilekey"]] == tmp_path
    assert "dockerfile" not in spec.inputs
    with pytest.raises(llb.UnresolvedLazyStateError):
        llb.marshal(llb.dockerfile(tmp_path / "app.Dockerfile").mkdir("/x"))
    with pytest.raises(DockerfileError):
        llb.dockerfile(b"FROM scratch\n", context=42)  # type: ignore[arg-type]


def test_source_maps_survive_import_and_marshal() -> None:
    base = llb.scratch().mkfile("/a", "a")
    definition = llb.marshal(base).to_pb()
    digest = llb.marshal(base).head_digest
    assert digest is not None
    definition.source = pb.Source(
        infos=[pb.SourceInfo(filename="Dockerfile", data=b"FROM scratch\nRUN x\n", language="Dockerfile")],
        locations={
            digest: pb.Locations(
                locations=[
                    pb.Location(
                        source_index=0,
                        ranges=[pb.Range(start=pb.Position(line=2), end=pb.Position(line=2, character=5))],
                    )
                ]
            )
        },
    )
    imported = llb.from_definition(bytes(definition)).mkdir("/b")
    again = llb.marshal(imported)
    assert again.sources[digest] == (
        SourceLocation("Dockerfile", b"FROM scratch\nRUN x\n", "Dockerfile", ((2, 0, 2, 5),)),
    )
    out = again.to_pb()
    assert out.source is not None
    assert [i.filename for i in out.source.infos] == ["Dockerfile"]
    assert out.source.locations[digest].locations[0].ranges[0].end.character == 5  # type: ignore[union-attr]
