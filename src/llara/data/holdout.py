"""Cross-fitting: training users an SR backbone leaves out, so an LLM can learn from its evidence on them.

An LLM trained on an SR backbone's evidence (behavioral tokens, answer tokens, user tokens) learns how
far to trust that evidence. On the backbone's own training rows the evidence is better than it will ever
be on new users: the backbone has fitted those very transitions. With ``sr.holdout_users`` the backbone
trains without a seeded share of the training users, and with ``train.sr_unseen_rows`` the LLM trains only
on those users' rows, where the evidence is as reliable as on validation and test users. The held-out
users are a pure function of the user ids, the share and the seed, so both sides draw the same ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llara.errors import LlaraError


def held_out_rows(users: pd.Series, share: float, seed: int) -> np.ndarray:
    """Boolean mask over rows: True where the row's user is among the ``share`` of distinct users drawn
    with ``seed``. ``share`` 0 holds out nobody; a share that would hold out nobody or everybody is an error."""
    if share == 0:
        return np.zeros(len(users), dtype=bool)
    users = users.astype(str)
    distinct = np.unique(users.to_numpy())
    count = round(share * len(distinct))
    if not 0 < count < len(distinct):
        raise LlaraError(
            f"sr.holdout_users={share} holds out {count} of {len(distinct)} training users; "
            "choose a share that leaves some users on each side"
        )
    chosen = np.random.default_rng([seed, 29]).permutation(len(distinct))[:count]
    return users.isin(set(distinct[chosen])).to_numpy()
