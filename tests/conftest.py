"""The suite opts in to the fixtures of :mod:`llblib_async.testing.plugin` (installing the
package does not load them)."""

pytest_plugins = ["llblib_async.testing.plugin"]
