"""Book helpers: glued numbers and tables, the figure style, and the source display of the notebooks.
Nothing in the library imports them.
"""
