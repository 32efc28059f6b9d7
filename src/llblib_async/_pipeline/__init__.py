"""The request pipeline: one way from a :class:`~llblib_async.Request` to its result.

* :mod:`.run` -- :func:`~.run.run_request`, the pipeline itself (read it first);
* :mod:`.solve_request` -- the ``Control.SolveRequest`` and the exporters' image config;
* :mod:`.cache_plan` -- cache entries and the client's part of local caches;
* :mod:`.oci_index` -- ``index.json`` of OCI layout directories;
* :mod:`.exports` -- :class:`~.exports.ExportRoute`, the session's way back for exports,
  lent to one request at a time;
* :mod:`.failures` -- turning a failure into the most telling typed error.

:class:`~llblib_async.Session` owns the session the pipeline runs in; ``client.solve``
is a one-request session.
"""
