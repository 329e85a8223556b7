"""The simulated world: gym-aloha tasks rendered headless, scripted policies, rollouts, records."""
