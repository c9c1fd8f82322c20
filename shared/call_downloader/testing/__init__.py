"""Hooks for testing the product from outside (fault injection for the reliability drills)."""
