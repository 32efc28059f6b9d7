"""The session's health service: ``grpc.health.v1.Health/Check`` answering SERVING.

The daemon polls it every 5 s (or at the interval a test asks for, see
:func:`.headers.session_headers`) and drops the session after a failed check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import grpclib.const
import grpclib.server

from .._pb.grpc.health import v1 as health

__all__ = ["HEALTH_CHECK_METHOD", "HealthService"]

HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"


class HealthService:
    """``grpc.health.v1.Health/Check`` answering SERVING (the daemon polls it every 5 s)."""

    def __init__(self) -> None:
        self.checks = 0
        self._checked = anyio.Condition()

    async def _check(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(
            health.HealthCheckResponse(status=health.HealthCheckResponseServingStatus.SERVING)
        )
        self.checks += 1
        async with self._checked:
            self._checked.notify_all()

    async def wait_check(self) -> None:
        """Wait until the next health check has been answered."""
        async with self._checked:
            await self._checked.wait()

    def __mapping__(self) -> Mapping[str, grpclib.const.Handler]:
        return {
            HEALTH_CHECK_METHOD: grpclib.const.Handler(
                self._check,
                grpclib.const.Cardinality.UNARY_UNARY,
                health.HealthCheckRequest,
                health.HealthCheckResponse,
            )
        }
