"""fleetpool on AWS Lambda: per-invocation metrics, the Lambda layer, the sample's helper.

Nothing here is imported by ``import fleetpool``; each module imports boto3 or
Powertools only when it needs them, so a function's cold start does not pay for
them (``benchmarks/cold_start.py`` measures it).

* :mod:`fleetpool.aws.emf` -- the EMF blob ``@db.handler`` writes at the end of
  each invocation (through Powertools when installed).
* :mod:`fleetpool.aws.powertools` -- the adapter to aws-lambda-powertools.
* :mod:`fleetpool.aws.helper` -- ``handler``: a drop-in for the AWS sample's
  connection-counting helper function, backed by leases.
* :mod:`fleetpool.aws.layer` -- ``fleetpool layer build``: a Lambda layer zip.
"""
