"""A FastAPI CSV upload, buggy and fixed side by side, and the tests that tell them apart.

- ``csv_upload.buggy``: the case study's app, with every bug it finds;
- ``csv_upload.fixed``: the same app after the remedy;
- ``csv_upload.pitfalls``: the other async pitfalls, as small endpoints;
- ``csv_upload.common``: settings, the CSV format and the table they share.
"""
