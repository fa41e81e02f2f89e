"""Membership-inference auditing of released synthetic data and models."""
