"""The node agent: copies one shard of objects between two S3 endpoints through s5cmd."""
