"""Web layer: the WSGI app (bottle), core routes and the threaded TLS server (cheroot)."""
