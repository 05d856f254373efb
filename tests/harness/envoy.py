"""A real Envoy process: meshctl.local.envoy (shared with `meshctl demo`), re-exported for tests."""

from meshctl.local.envoy import DEFAULT_ENVOY, REPO_ROOT, EnvoyProcess, envoy_binary

__all__ = ["DEFAULT_ENVOY", "REPO_ROOT", "EnvoyProcess", "envoy_binary"]
