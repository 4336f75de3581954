"""The state DB's schema version, alone: `migrations` brings a DB up to it,
and `first_page` reads only a DB already at it, without loading SQLAlchemy."""

SCHEMA_VERSION = 7
