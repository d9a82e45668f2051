"""Provides an example third-party connector: how docs/writing-a-connector.md lays one out.

The package is test data: ``tests/plugin_example`` holds it next to a
``replywatch_example-0.1.dist-info`` whose ``entry_points.txt`` is what the package's own
``pyproject.toml`` would install. Putting that folder on ``sys.path`` registers the
``example`` kind without installing anything.
"""
