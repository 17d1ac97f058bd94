"""Users file, password hashing, login throttling and the session store."""
