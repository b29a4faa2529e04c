"""The analyst console (``/console``), served by the admin API's process."""
