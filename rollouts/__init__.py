"""Progressive delivery (``market-ab rollout``): the ``Rollout`` document, its gates and decisions (pure), the loop
that moves an Experiment's weights on the local stack or a cluster and keeps an audit log, and its simulation."""
