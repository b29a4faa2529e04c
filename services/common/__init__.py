"""Parts shared by every process: settings, event contracts and metrics."""
