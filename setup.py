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
        "bottle>=0.12",
        "cheroot>=8.5",
        "psycopg2-binary>=2.8",
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
