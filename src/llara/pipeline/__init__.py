"""``llara run``: the one-command pipeline over variants, its stage store, report and plots.

Lives here: ``run`` (variants -> hash-keyed stages -> report), ``variants`` (which variants and stages a run
plans), ``sr_pick`` (an SR backbone picked by validation HR@1), ``stages`` (reuse by content hash),
``results`` (the row and log types that report and plots share), ``report`` (report.md), ``plots``
(PNG figures), ``environment`` (package versions and device).

May import every other stage; nothing imports it except ``llara.commands``.
"""
