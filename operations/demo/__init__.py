"""A realistic demo: three stores, ~200 members and 18 months of ledger history (``manage.py seed_demo``).

Every change goes through the services with ``now=`` set to when it happened, in
chronological order across all members, and the nightly release and expiry jobs run at
03:00 on every day of the history. So entries carry past dates, pending points were
released a week after their order, and lots older than the expiry policy really expired.

A fixed random seed makes the data the same on every run of the same day, shifted by a
day for each day later (member card numbers are drawn by ``member_create`` and differ). The whole run is one
transaction: a failure leaves nothing behind, and the marker that makes a second run a
no-op (the demo stores with members) exists only if the run completed.

The historical job runs are the real, global jobs: on a database that already holds other
members with unsettled lots, those would be settled with a past date too. The demo is
meant for a fresh database (``make run`` seeds right after ``migrate``).

Modules by topic: ``run`` (the state of a run, the random draws of times), ``stores`` (stores
and the demo staff user), ``programme`` (tiers, benefits, earning rules), ``members``,
``orders`` (orders, refunds, paying with points), ``history`` (the dated plan: staff
adjustments, redemptions, nightly jobs), ``rewards`` (the points mall), ``seed`` (the run).
"""
