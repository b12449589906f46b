"""The SIP protocol, pure and stateless: codes, the generic grammar, URIs, messages and
their parts, the parser and the stream framer, the serializer, SDP and the responses a
request gets.

Imports nothing of the project but ``errors`` and ``version``; no I/O, no clock.
"""
