"""fsutil's file-transfer protocol ("diffcopy") in Python.

BuildKit moves directories between client and daemon with the packet protocol of
``github.com/tonistiigi/fsutil`` (STAT / REQ / DATA / FIN / ERR packets, see
``send.go`` and ``receive.go`` upstream). This package holds:

* :mod:`.gomode` -- Go ``os.FileMode`` bits <-> POSIX ``st_mode``;
* :mod:`.patterns` -- a port of ``github.com/moby/patternmatcher`` (dockerignore syntax);
* :mod:`.walk` -- a synchronous walker producing fsutil ``Stat`` entries in Go's order,
  with fsutil's include/exclude/followpaths filtering;
* :mod:`.send` -- the sending side: a local directory tree -> daemon;
* :mod:`.receive` -- the receiving side: an exported tree -> a local directory;
* :mod:`.wire` -- the packet codec and the grpclib stream adapter;
* :mod:`.beneath` -- descriptor-relative file access that never follows symlinks.

The session services that use them (FileSync, FileSend) are attachables:
:mod:`llblib_async.attachables.filesync` and :mod:`llblib_async.attachables.filesend`.

Cross-checked against Go: ``tests/test_fsutil_unit.py`` builds fsutil's own walker
from the Go module cache and compares every ``Stat`` field.
"""
