"""For tests of SIP clients: ``Responder`` (async), ``ThreadedResponder`` (sync), the
assertions on calls and the pytest plugin.
"""
