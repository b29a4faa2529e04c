"""The tools that prove the runtime: benchmarks, fault scenarios, the main job's demo and the
decision tap they share.

Not shipped in the runtime image. Tools use ``services`` and ``models``; nothing in
``services`` imports them (``fraud`` finds their subcommands when this package is installed).
"""
