"""Judging trained generators: classifier, metrics, run evaluation, reports.

May import models/, data/, images, errors, expressions, config and
inference/loading (which loads runs through training/checkpoints); nothing
imports evaluation except the evaluate command and compare.
"""
