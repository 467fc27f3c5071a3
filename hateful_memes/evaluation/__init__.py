"""Scoring predictions against gold labels, and showing the result.

Read metrics.py first (the official metric and the per-label view), then report.py (terminal,
JSON, Markdown and PNG) and html_report.py with templates/report.html.j2 (the self-contained
HTML page for error analysis).
"""
