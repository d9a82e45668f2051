"""Provides the weekly SLA report: pure aggregation of a period's clocks, and its renderers.

``period`` names weeks and date ranges; ``aggregate`` turns clocks into a
:class:`~monitor.reports.aggregate.Report`; ``html`` (with ``charts`` and the Jinja2
templates), ``markdown`` and ``tabular`` (CSV, JSON) only format it, through
``formatting``; ``weekly`` reads the store, writes the files and schedules the job;
``send`` hands the report to the alert targets. Only ``weekly`` and ``send`` do I/O.
See docs/reports.md.
"""
