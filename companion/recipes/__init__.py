"""The trained models: each recipe's configuration, its training function and its loader (the weights
come from :mod:`companion.store`). It imports the layers below it, never
:mod:`companion.experiments`.
"""
