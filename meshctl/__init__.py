"""meshctl: a service-mesh control plane where traffic follows negotiated SLA contracts."""

__version__ = "0.1.0"
