"""Rate limiting, in the shape of envoyproxy/ratelimit: the algorithm (algorithm.py, pure), its
backends (memory.py in-process, redis_store.py shared by replicas), the factory choosing one from
the settings (factory.py), and the service answering which limit applies to a tenant
(service.py). Transport adapts it: server/transport/interceptors/rate_limiting.py,
server/transport/rate_limits.py and the headers in server/transport/rate_limit_headers.py."""
