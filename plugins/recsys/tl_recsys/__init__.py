"""tl-recsys: sequential recommendation (SASRec) that transfers to new users and markets."""

__version__ = "0.1.0"
