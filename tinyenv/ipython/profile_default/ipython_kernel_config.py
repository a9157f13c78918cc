# Kernels inside tools/tiny-env keep no input history: concurrent runs would share its database.
c.HistoryManager.enabled = False  # noqa: F821
