"""The gateway side of a build: the ``LLBBridge`` client and what result handlers get.

* :mod:`.bridge` -- :class:`~.bridge.Bridge`, the ``LLBBridge`` calls of one gateway
  build (solve, read files of results, return the result);
* :mod:`.result` -- :class:`Result`, the solved result handed to result handlers;
* :mod:`.filestat` -- :class:`FileStat`, one file of a result;
* :mod:`.container` -- :class:`Container`, a container on the build worker, and
  :mod:`.process` -- :class:`Process`, one process in it (``ExecProcess``);
* :mod:`.container_spec` -- what a container is made of, from an exec op (sans-IO);
* :mod:`.options` -- :class:`ContainerOptions`, the user's description of one;
* :mod:`.local_terminal` -- the local terminal lent to a process (raw mode, resizes);
* :mod:`.on_error` -- :class:`OnError`, debugging a failed step in a container.
"""

from .container import Container
from .filestat import FileStat
from .on_error import OnError
from .options import ContainerOptions
from .process import Process
from .result import Result

__all__ = ["Container", "ContainerOptions", "FileStat", "OnError", "Process", "Result"]
