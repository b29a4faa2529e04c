"""Fault injection (``fraud chaos``): crashes and outages during replays, audited."""
