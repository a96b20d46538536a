"""Scenario files here (`*.scenario.yaml`) are collected by the egress pytest plugin, which
pyproject's `pytest11` entry point loads; policies and apps beside them are never collected. The
plugin itself marks every scenario item `docker` (`pytest -m "not docker"` leaves them out), so
scenario files kept in any other folder get the mark too."""
