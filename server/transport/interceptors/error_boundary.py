"""The one error boundary of the billing API, and the call's database session."""

from __future__ import annotations

import logging

import peewee
from playhouse.pool import MaxConnectionsExceeded

from server.domain.errors import DomainError, Internal, Unavailable
from server.persistence import db
from server.transport import context as call_context
from server.transport.errors import abort
from server.transport.interceptors.chain import Layer
from server.transport.interceptors.methods import PUBLIC_METHODS

log = logging.getLogger("billing.transport")

# The database did not answer (gone, unreachable, read-only, pool exhausted): retryable.
DATABASE_LOST = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)


class ErrorInterceptor(Layer):
    """Outermost after observation: opens the call's database session (health has its own probe,
    to report a lost database rather than fail with it) and turns every failure into a status.
    Domain errors carry theirs; a lost database is UNAVAILABLE; anything else is INTERNAL with a
    request id, whose traceback goes to the log under the same id. No driver or SQL text reaches
    a client."""

    def wrap(self, method, handler):
        if method in PUBLIC_METHODS:
            return super().wrap(method, handler)
        behavior = handler.unary_unary

        def in_session(request, context):
            with db.session():
                return behavior(request, context)

        return super().wrap(method, handler._replace(unary_unary=in_session))

    def around(self, behavior, request, context, method):
        try:
            return behavior(request, context)
        except DomainError as error:
            failure = error
        except DATABASE_LOST as error:
            log.warning("database unavailable in %s: %s: %s", method, type(error).__name__, str(error)[:200])
            failure = Unavailable("the database is unavailable; retry later")
        except Exception:
            failure = Internal(call_context.request_id(context.invocation_metadata()))
            log.exception("unexpected error in %s (request id %s)", method, failure.request_id)
        abort(context, failure)
