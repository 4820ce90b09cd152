"""The client library a function runs: :class:`fleetpool.Database` and the reaper.

Nothing is imported here: ``fleetpool.Database`` loads this package on first use, so
``import fleetpool`` stays cheap (see ``fleetpool.__getattr__``).
"""
