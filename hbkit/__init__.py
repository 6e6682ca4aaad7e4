"""hbkit: hybrid batch training for multilingual retrieval — a teaching and replication kit."""
__version__ = "0.1.0"
