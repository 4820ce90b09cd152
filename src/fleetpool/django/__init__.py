"""Django database backends with fleetpool's lease and warm-connection semantics.

Use ``"ENGINE": "fleetpool.django.postgresql"`` or ``"fleetpool.django.mysql"``
in ``DATABASES``; fleetpool's settings go in the entry's ``"FLEETPOOL"`` dict
(the :class:`fleetpool.Database` keyword arguments, e.g. ``{"budget":
"redis://...", "lease_ttl": 120}``). See :mod:`fleetpool.django._wrapper`.
"""
