"""The pure core: plans, scopes, waves, policies, results. No Docker, no subprocess."""
