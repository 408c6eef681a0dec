"""The DOCL bank past one machine: shards of users' models on Ray actors, decided exactly.

``ray`` is an optional dependency (the ``cluster`` extra); it is imported when a
:class:`ShardedBank` is built, so importing this package does not need it.
"""

from imgprivacy.cluster.reduction import deciding_columns, merge_columns
from imgprivacy.cluster.shard import BankShard, ModelSource, ShardReply, ShardState, shard_of
from imgprivacy.cluster.sharded_bank import ShardedBank, ShardedBankConfig, ShardUnavailableError

__all__ = [
    "BankShard",
    "ModelSource",
    "ShardReply",
    "ShardState",
    "ShardUnavailableError",
    "ShardedBank",
    "ShardedBankConfig",
    "deciding_columns",
    "merge_columns",
    "shard_of",
]
