"""The gateway side of a build: the ``LLBBridge`` client and what result handlers get.

* :mod:`.bridge` -- :class:`~.bridge.Bridge`, the ``LLBBridge`` calls of one gateway
  build (solve, read files of results, return the result);
* :mod:`.result` -- :class:`Result`, the solved result handed to result handlers;
* :mod:`.filestat` -- :class:`FileStat`, one file of a result.

Containers on the build worker (``NewContainer``, ``ExecProcess``, interactive shells
on failure) belong here too.
"""

from .filestat import FileStat
from .result import Result

__all__ = ["FileStat", "Result"]
