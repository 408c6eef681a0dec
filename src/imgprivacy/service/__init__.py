"""The DOCL filter as an HTTP service (FastAPI + SQLAlchemy); see the README's "DOCL service"."""

from imgprivacy.service.app import create_app
from imgprivacy.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
