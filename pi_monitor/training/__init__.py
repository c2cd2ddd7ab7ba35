"""Training, evaluation and export of the cry classifier (`python -m pi_monitor.training`).

torch is imported only inside the modules that need it (model, train, export, mn04, teachers),
never here, so corpus handling, augmentation and evaluation stay usable without it.
"""
