"""Data: raw readers -> one Interactions table -> frozen next-item samples (see ``dataset.py``).

Lives here: one module per source, ``readers`` (the registry), ``interactions`` (the table every reader
produces), ``domains`` (item domains and their template words), ``protocol`` (the samples), ``prepare``,
``dataset`` (the prepared folder), ``stats``.

May import: the top-level modules only; never a later stage.
"""
