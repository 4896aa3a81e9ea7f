"""Reads behind the dashboard, one module per page; `common` holds what several pages share.

Every function takes the workspace explicitly, so no page can show another tenant's rows.
Only portable ORM expressions are used (Count/Avg with filter=, Trunc with a time zone,
datetime subtraction), which Django compiles for both PostgreSQL and SQLite.
"""
