"""The ground floor: errors, events, jobs and cancel tokens, atomic writes, storage paths and
the notifier. Nothing here imports torch, the model zoo or any other floor of ``vizapp``."""
