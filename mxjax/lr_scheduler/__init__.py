"""MXNet's learning-rate schedulers as pure step-to-rate functions (see issue: schedulers)."""
