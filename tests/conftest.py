"""Shared fixtures: a fresh, migrated database per test on SQLite, or on PostgreSQL when
RIS_TEST_DATABASE_URL is set (then each test session works in a database of its own, created from
that URL and dropped at the end, so concurrent runs never see each other's rows)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from ris.db import Database
from ris.db.models import Base
from ris.domain.users import Role
from ris.services import RisService
from ris.settings import Settings, load_settings
from tests.support.web import logged_in_client

TEST_ZONE = "Europe/Berlin"


class TestDatabases:
    """Hands out empty, migrated databases."""

    def __init__(self, tmp_root: Path) -> None:
        self.server_url = os.environ.get("RIS_TEST_DATABASE_URL", "")
        self.tmp_root = tmp_root
        if self.server_url:
            self.url = self._create_postgres_database()
        else:
            template = tmp_root / "template.db"
            self.url = f"sqlite:///{template}"
        database = Database(self.url)
        database.upgrade()
        database.dispose()

    def _create_postgres_database(self) -> str:
        name = f"ris_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.database_name = name
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def fresh(self, tmp_path: Path) -> str:
        if not self.server_url:
            target = tmp_path / "ris.db"
            shutil.copyfile(self.tmp_root / "template.db", target)
            return f"sqlite:///{target}"
        engine = create_engine(self.url)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return self.url

    def drop(self) -> None:
        if not self.server_url:
            return
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    databases = TestDatabases(tmp_path_factory.mktemp("databases"))
    yield databases
    databases.drop()


@pytest.fixture
def database_url(test_databases: TestDatabases, tmp_path: Path) -> str:
    return test_databases.fresh(tmp_path)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "instance_path": tmp_path / "instance",
            "database_url": database_url,
            "timezone": TEST_ZONE,
            "secret_key": "test-secret",
        },
    )


@pytest.fixture
def service(settings: Settings) -> Iterator[RisService]:
    ris = RisService(Database(settings.database_url), settings)
    yield ris
    ris.db.dispose()


@pytest.fixture
def broken_service(settings: Settings, tmp_path: Path) -> RisService:
    """A service whose database cannot be opened (the directory of the file does not exist)."""
    return RisService(Database(f"sqlite:///{tmp_path / 'missing' / 'ris.db'}"), settings)


@pytest.fixture
def make_app(settings: Settings) -> Iterator[Callable[..., Flask]]:
    """Build the web app on this test's site (keyword arguments override settings); its database
    connections are closed when the test ends."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        flask_app = create_app(
            {
                "instance_path": settings.instance_path,
                "database_url": settings.database_url,
                "timezone": settings.timezone,
                "secret_key": settings.secret_key,
                **overrides,
            }
        )
        flask_app.config["TESTING"] = True
        apps.append(flask_app)
        return flask_app

    yield make
    for flask_app in apps:
        flask_app.extensions["ris"].db.dispose()


@pytest.fixture
def frontdesk_client(make_app: Callable[..., Flask], service: RisService) -> FlaskClient:
    """A test client logged in (through the login form) as the front-desk user ``desk``."""
    return logged_in_client(make_app().test_client(), service, "desk", Role.FRONTDESK)


@pytest.fixture
def admin_client(make_app: Callable[..., Flask], service: RisService) -> FlaskClient:
    """A test client logged in (through the login form) as the administrator ``boss``."""
    return logged_in_client(make_app().test_client(), service, "boss", Role.ADMIN)
