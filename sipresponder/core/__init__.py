"""The sans-IO responder: configuration, plans and rules, the transactions and their
timers, the endpoint that dispatches, and the journal with the verdicts on the client.

Driven by events and a clock passed in (``Endpoint.receive(data, flow, now)``); imports
``sip`` and nothing that does I/O.
"""
