"""Training rows an LLM learns the SR backbone's evidence on, chosen so that evidence is as reliable as on
new users.

An LLM trained on an SR backbone's evidence (behavioral tokens, answer tokens, user tokens) learns how
far to trust that evidence. On most of the backbone's own training rows the evidence is better than it
will ever be on new users: the backbone has fitted those very transitions, and fitted the early ones over
many epochs. Two rules pick rows where it is not:

* Cross-fitting (``sr.holdout_users`` with ``train.sr_unseen_rows``): the backbone trains without a
  seeded share of the training users, and the LLM trains only on those users' rows. The backbone loses
  those users' data.
* Each user's latest rows (``train.last_rows``): the LLM trains only on the last ``k`` rows of every
  training user (a prepared folder lists each user's rows in time order). The backbone trains on
  everything; on these rows its evidence is close to what it gives new users, and they sit at the end of
  their sequences, like the validation and test rows.

Both rules are pure functions of the rows and the settings (and, for cross-fitting, the seed), so the
backbone and the LLM agree on the held-out users.
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


def last_rows(users: pd.Series, last: int) -> np.ndarray:
    """Boolean mask over rows (``users``: each row's user, a user's rows in time order): True on each
    user's last ``last`` rows (all of them for a user with fewer)."""
    keys = users.astype(str).to_numpy()
    from_end = pd.Series(keys).groupby(keys, sort=False).cumcount(ascending=False)
    return (from_end < last).to_numpy()
