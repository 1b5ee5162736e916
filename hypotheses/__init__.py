"""The claims of the study as data plus pure decision functions, and the pytest plugin.

A claim never trains: it reads a results table and returns a Verdict. See README.md.
"""
