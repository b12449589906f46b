"""The glue's socket calls written in C: ``udp`` (``recvmmsg``/``sendmmsg`` batches and
``sendto`` for ``aio/udp.py``'s ``DatagramSocket``) and ``rtp`` (one read from each ready
socket of an epoll set, for ``aio/rtp.py``'s ``MediaDriver``).

Each function here has a Python twin in ``aio/udp.py`` or ``aio/rtp.py`` (its
``_py_<name>``) with the same signature and results.  Built with the compiled core
(``native.C_MODULES``, ``setup.py``) and imported only through the loader,
``sip/_speedups.py`` (``TWINS``, ``twin``); never imported while the pure-Python core runs.
They import nothing of the project.
"""
