"""PostgreSQL storage: the embedded server, migrations and repositories."""
