"""The product's local S3 server (moto, IAM auth on) is what the tests use too."""

from skymigrate.operator.locals3 import S3Server, free_port, running_moto

__all__ = ["S3Server", "free_port", "running_moto"]
