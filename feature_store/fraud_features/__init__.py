"""Feast definitions of fraud-detection: entities, feature views and the model's feature service.

A distinctively named sub-package, because Feast imports every file of its repository folder
by a name relative to that folder.
"""
