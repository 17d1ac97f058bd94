"""Packaging of temboard-agent and its maintenance plugin."""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(
    r'__version__ = "([^"]+)"', (here / "temboardagent/__init__.py").read_text()
).group(1)

setup(
    name="temboard-agent",
    version=version,
    description="PostgreSQL remote control agent with a maintenance plugin",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="PostgreSQL",
    python_requires=">=3.9",
    packages=find_packages(include=["temboardagent", "temboardagent.*"]),
    package_data={
        "temboardagent": ["sql/*.sql"],
        "temboardagent.plugins.maintenance": ["sql/*.sql"],
    },
    install_requires=[
        # WSGI routing of the API; 0.12 has Bottle.config and the router used here
        "bottle>=0.12",
        # the threaded HTTPS server; 8.5 has keep_alive_conn_limit and
        # max_request_body_size, which bound what clients can make it hold
        "cheroot>=8.5",
        # the PostgreSQL driver, built against the system's libpq as distributions
        # ship it (psycopg's maintainers advise against psycopg2-binary in
        # production); 2.8 brings psycopg2.errors, error diagnostics, connection.info
        "psycopg2>=2.8",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "requests>=2.25",
            "ruff>=0.17,<0.18",
            "schemathesis>=4,<5",
            "selenium>=4.11",
        ],
    },
    entry_points={
        "console_scripts": [
            "temboard-agent = temboardagent.cli:main",
            "temboard-agent-adduser = temboardagent.cli:adduser_main",
            "temboard-agent-password = temboardagent.cli:password_main",
        ],
        "temboardagent.plugins": [
            "maintenance = temboardagent.plugins.maintenance:MaintenancePlugin",
        ],
    },
)
