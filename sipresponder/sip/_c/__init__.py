"""The protocol's loops written in C, one extension module per concern: ``headers`` (the
header scanner and the readers of the request line, Via parameters, From/To and numbers),
``framer`` (the TCP framer's head scan) and ``tag`` (the To tag's keyed BLAKE2s).

Each function here stands for a Python function of ``sip`` (its ``_py_<name>``), which stays
the definition.  Built with the compiled core (``native.C_MODULES``, ``setup.py``) and
imported only through the loader, ``sip/_speedups.py`` (``TWINS``, ``twin``); never
imported while the pure-Python core runs.  They import nothing of the project.
"""
