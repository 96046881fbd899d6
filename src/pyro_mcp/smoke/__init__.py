"""Guest-backed smoke packs for the five use-case recipes (docs/use-cases/)."""
