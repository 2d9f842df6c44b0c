"""Training: ``fit(args)`` and what it needs (flags, schedules, callbacks, fine-tuning)."""
