"""Test settings: the real settings plus a throwaway SECRET_KEY.

The database still comes from DATABASE_URL / DB_* (default SQLite), so the
suite can be pointed at PostgreSQL by exporting DATABASE_URL.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e")

from djangoapp.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
