"""The PostgreSQL database backend: Django's, with a cheaper connection health check
(core.postgresql.base)."""
