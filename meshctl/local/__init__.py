"""Local real processes: Envoy sidecars and HTTP upstreams, started and stopped by PID.

Used by `meshctl demo` and by the integration tests (tests/harness re-exports these).
"""
