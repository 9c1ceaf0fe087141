"""Cross-fitting: training rows an SR backbone leaves out, so an LLM can learn from its evidence on them.

An LLM trained on an SR backbone's evidence (behavioral tokens, answer tokens, user tokens) learns how
far to trust that evidence. On the backbone's own training rows the evidence is better than it will ever
be on new users: the backbone has fitted those very transitions. Two rules leave rows out of the
backbone's training, and with ``train.sr_unseen_rows`` the LLM trains only on the rows left out, where
the backbone has never fitted the target:

* ``sr.holdout_users``: a seeded share of the training users, all their rows. The backbone loses those
  users' data entirely.
* ``sr.holdout_last``: the last ``k`` rows of every training user (a prepared folder lists each user's
  rows in time order, so these are the user's ``k`` latest targets). The backbone keeps every user and
  loses only ``k`` targets of each, so it stays close to the backbone trained on everything; the rows
  left out are late in their sequences, like the validation and test rows.

Both rules are pure functions of the rows, the settings and the seed, so the backbone and the LLM draw
the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llara.errors import LlaraError


def held_out_rows(users: pd.Series, share: float, seed: int, last: int = 0) -> np.ndarray:
    """Boolean mask over rows (``users``: each row's user, a user's rows in time order): True where the
    row's user is among the ``share`` of distinct users drawn with ``seed``, or the row is among its user's
    ``last`` rows. ``share`` 0 and ``last`` 0 hold out nothing; a share that would hold out nobody or
    everybody is an error."""
    return _held_out_users(users, share, seed) | last_rows(users, last)


def _held_out_users(users: pd.Series, share: float, seed: int) -> np.ndarray:
    """True on every row of the ``share`` of distinct users drawn with ``seed``."""
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


def last_rows(users: pd.Series, last: int) -> np.ndarray:
    """True on each user's last ``last`` rows (all of them for a user with fewer; ``users``: each row's
    user, a user's rows in time order); ``last`` 0: nowhere."""
    if last == 0:
        return np.zeros(len(users), dtype=bool)
    from_end = users.astype(str).groupby(users.astype(str).to_numpy(), sort=False).cumcount(ascending=False)
    return (from_end < last).to_numpy()
