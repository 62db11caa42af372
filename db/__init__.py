"""History database: SQLAlchemy models, session factories, repositories and Alembic migrations."""
