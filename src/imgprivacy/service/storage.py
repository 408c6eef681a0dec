"""Users and their guard models in a SQL database (SQLAlchemy 2: SQLite or PostgreSQL).

Every write runs in one transaction that also bumps the single ``bank_state.revision`` counter
and stamps the written model with it. The row lock on that counter orders concurrent writers, so
revisions become visible in commit order: a replica that has seen revision R and later reads R'
> R finds every change up to R' by comparing per-model revisions (see :mod:`.sync`).

Refusals are storage errors from :mod:`imgprivacy.errors` (``AlreadyExistsError``,
``RecordNotFoundError``, ``QuotaExceededError``, ``CapacityError``), each with a stable
``reason``; the service's one exception handler turns them into HTTP answers.
"""

from __future__ import annotations

from imgprivacy.service.database import make_engine
from imgprivacy.service.model_store import ModelStore, stored_upload, write_upload
from imgprivacy.service.tables import ModelInfo, NewModel, PendingInfo, UserInfo
from imgprivacy.service.user_store import UserStore, user_info

__all__ = [
    "ModelInfo",
    "NewModel",
    "PendingInfo",
    "Storage",
    "UserInfo",
    "make_engine",
    "stored_upload",
    "user_info",
    "write_upload",
]


class Storage(UserStore, ModelStore):
    """Transactions over users and models; each public method is one transaction.

    The users' methods live in :class:`~.user_store.UserStore`, the models' and what replicas
    poll in :class:`~.model_store.ModelStore`; both share one :class:`~.database.Database`.
    """
