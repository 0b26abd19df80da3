"""Session Memory server: a typed, expiring, per-conversation memory over gRPC."""

__version__ = "0.1.0"
