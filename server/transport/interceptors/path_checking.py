"""A REST call acts on the resource its path names, whatever its body says
(server/transport/path_binding.py); only methods whose path has variables are wrapped."""

from __future__ import annotations

from server.transport import path_binding
from server.transport.interceptors.chain import Layer


class PathBindingInterceptor(Layer):
    def wraps(self, method, handler):
        return super().wraps(method, handler) and path_binding.binds(method)

    def around(self, behavior, request, context, method):
        for key, value in context.invocation_metadata():
            if key == path_binding.ORIGINAL_PATH:
                path_binding.check(method, value, request)
        return behavior(request, context)
